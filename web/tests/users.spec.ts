// Several users in one browser: each signed-in user has a database (and an OPFS storage pool) of
// their own, so two windows of one browser signed in as two users both work, and a reload keeps each
// window's user. A database from before per-user pools is still found, pending changes included.
import { test, expect, signIn, openRecord, serverQuery } from "./fixtures";

const JOB = "job-a-00042";

test("two windows of one browser, signed in as two users, work side by side", async ({ browser, server }) => {
  const ctx = await browser.newContext();
  const first = await ctx.newPage();
  await signIn(first, server, "alice");
  // A new window opens as the browser's last user; it signs out and in as Tom.
  const second = await ctx.newPage();
  await second.goto(server.url + "/");
  await expect(second.getByTestId("user-name")).toContainText("Alice");
  await second.getByRole("button", { name: "Sign out" }).click();
  await second.getByTestId("signin-tom").click();
  await expect(second.getByTestId("status")).toHaveAttribute("data-phase", "live", { timeout: 60_000 });
  await expect(second.getByTestId("user-name")).toContainText("Tom");
  await expect(first.getByTestId("status")).toHaveAttribute("data-phase", "live");

  // Alice's edit reaches Tom's window; a reload keeps each window's user.
  await openRecord(first, server, "jobs", JOB);
  await openRecord(second, server, "jobs", JOB);
  await first.getByTestId("field-notes-input").fill("From Alice's window");
  await first.getByTestId("field-notes-input").blur();
  await expect(second.getByTestId("field-notes-input")).toHaveValue("From Alice's window");
  await first.reload();
  await expect(first.getByTestId("user-name")).toContainText("Alice");
  await expect(first.getByTestId("status")).toHaveAttribute("data-phase", "live", { timeout: 60_000 });
  await second.reload();
  await expect(second.getByTestId("user-name")).toContainText("Tom");
  await expect(second.getByTestId("status")).toHaveAttribute("data-phase", "live", { timeout: 60_000 });
});

test("a database from the shared pool of before is found, with its pending changes", async ({ browser, server }) => {
  const ctx = await browser.newContext();
  const old = await ctx.newPage();
  await old.goto(server.url + "/");
  await old.evaluate(() => localStorage.setItem("moat.test.sharedPool", "1"));
  await signIn(old, server, "alice");
  await old.evaluate(() => window.moat!.goOffline());
  await expect(old.getByTestId("status")).toHaveAttribute("data-phase", "offline");
  await old.evaluate((id) => window.moat!.edit("jobs", id, "notes", { type: "text", value: "typed before the upgrade" }), JOB);
  await expect(old.getByTestId("status-pending")).toHaveAttribute("data-count", "1");
  await old.evaluate(() => localStorage.removeItem("moat.test.sharedPool"));
  await old.close();

  // The new version opens Alice's database where it is (offline, as she left it), and once she goes
  // online her change reaches the server.
  const upgraded = await ctx.newPage();
  await upgraded.goto(server.url + "/");
  await expect(upgraded.getByTestId("status-phase")).toHaveText("Working offline", { timeout: 60_000 });
  await upgraded.getByTestId("toggle-online").click();
  await expect(upgraded.getByTestId("status")).toHaveAttribute("data-phase", "live", { timeout: 60_000 });
  await expect(upgraded.getByTestId("status-pending")).toHaveAttribute("data-count", "0");
  await expect
    .poll(() => serverQuery(server, "SELECT notes FROM jobs WHERE id = ?", JOB)[0]?.[0])
    .toBe("typed before the upgrade");

  // While Alice's window holds the old pool, another user of this browser is told why they wait,
  // rather than given an empty database beside hers; once it closes, they sign in.
  const other = await ctx.newPage();
  await other.goto(server.url + "/");
  await other.getByRole("button", { name: "Sign out" }).click();
  await other.getByTestId("signin-tom").click();
  await expect(other.locator("main")).toContainText("another window of this browser holds its older storage");
  await upgraded.close();
  await other.reload();
  await expect(other.getByTestId("status")).toHaveAttribute("data-phase", "live", { timeout: 60_000 });
  await expect(other.getByTestId("user-name")).toContainText("Tom");
});
