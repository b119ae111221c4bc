// Several tabs of one origin: one owns the database (OPFS allows one), elected by a Web Lock; the
// other goes through it, and takes over when the owner's tab closes.
import { test, expect, signIn, openRecord, firstRowIds } from "./fixtures";

test("a second tab works through the owner and takes over when it closes", async ({ browser, server }) => {
  const ctx = await browser.newContext();
  const first = await ctx.newPage();
  await signIn(first, server, "alice");
  await expect(first.getByTestId("status")).toHaveAttribute("data-owner", "true");
  const second = await ctx.newPage();
  await second.goto(server.url + "/");
  await expect(second.getByTestId("status")).toHaveAttribute("data-phase", "live");
  await expect(second.getByTestId("list")).toBeVisible();
  await expect(second.getByTestId("status")).toHaveAttribute("data-owner", "false");

  // An edit in the second tab shows in the first (same database) and on the server's other clients.
  const [id] = await firstRowIds(second, 1);
  await openRecord(first, server, "jobs", id!);
  await openRecord(second, server, "jobs", id!);
  await second.getByTestId("field-notes-input").fill("Written in the second tab");
  await second.getByTestId("field-notes-input").blur();
  await expect(first.getByTestId("field-notes-input")).toHaveValue("Written in the second tab");

  // The owner goes away; the second tab opens the database itself and carries on.
  await first.close();
  await expect(second.getByTestId("status")).toHaveAttribute("data-owner", "true");
  await second.getByTestId("field-notes-input").fill("After the first tab closed");
  await second.getByTestId("field-notes-input").blur();
  await expect(second.getByTestId("status-pending")).toHaveAttribute("data-count", "0");
  const other = await (await browser.newContext()).newPage();
  await signIn(other, server, "alice");
  await openRecord(other, server, "jobs", id!);
  await expect(other.getByTestId("field-notes-input")).toHaveValue("After the first tab closed");
});
