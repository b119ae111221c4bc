// Accessible and phone-ready: axe-core finds no serious or critical violation on sign-in, the object
// types and list, a record, the new-record form and the dialogs; no page scrolls sideways at 360 px;
// screenshots at 390×844 and 1366×860 go to target/web-report/; and a keyboard alone opens a record
// from the list, edits it and settles a conflict.
import type { Page } from "@playwright/test";
import { test, expect, signIn, openRecord, serverQuery, shots, axe, type Server } from "./fixtures";

/** How far the page scrolls sideways (0 when nothing overflows). */
async function overflow(page: Page): Promise<number> {
  return page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
}

/** Every page of the app for `user`, each checked with axe and for overflow, and photographed. */
async function everyPage(page: Page, server: Server, width: number, check: (name: string) => Promise<void>): Promise<void> {
  await page.goto(server.url + "/");
  await expect(page.getByTestId("signin-alice")).toBeVisible();
  await check("signin");
  await page.getByTestId("signin-alice").click();
  await expect(page.getByTestId("status")).toHaveAttribute("data-phase", "live", { timeout: 60_000 });
  await expect(page.getByTestId("list")).toBeVisible();
  await check("list");
  await openRecord(page, server, "jobs", "job-a-00002");
  await check("detail");
  await page.goto(`${server.url}/#/new/jobs`);
  await expect(page.getByTestId("new-record")).toBeVisible();
  await check("create");
  await openRecord(page, server, "jobs", "job-a-00002");
  await page.getByTestId("detail-delete").click();
  await expect(page.getByTestId("confirm-delete")).toBeVisible();
  await check("delete-dialog");
  await page.keyboard.press("Escape");
  await expect(page.getByTestId("confirm-delete")).toHaveCount(0);
  await page.getByTestId("field-notes-input").fill(`Seen at ${width}px`);
  await page.getByTestId("toggle-online").click();
  await expect(page.getByTestId("status")).toHaveAttribute("data-phase", "offline");
  await page.getByTestId("field-notes-input").fill(`Pending at ${width}px`);
  await page.getByTestId("field-notes-input").blur();
  await page.getByTestId("status-pending").click();
  await expect(page.getByTestId("pending-panel")).toBeVisible();
  await check("pending-dialog");
  await page.keyboard.press("Escape");
  await page.getByTestId("toggle-online").click();
  await expect(page.getByTestId("status")).toHaveAttribute("data-phase", "live");
  await page.goto(`${server.url}/#/sync-health`);
  await expect(page.getByTestId("sync-health")).toBeVisible();
  await check("sync-health");
  await page.goto(`${server.url}/#/customize`);
  await expect(page.getByTestId("fields-editor")).toBeVisible();
  await check("customize");
  await page.goto(`${server.url}/#/o/customers`);
  await expect(page.getByTestId("list-title")).toHaveText("Customers");
  await check("customers");
}

test("no serious or critical axe-core violation, on a desktop and on a phone", async ({ browser, server }) => {
  for (const [width, height] of [
    [1366, 860],
    [390, 844],
  ] as const) {
    const page = await (await browser.newContext({ viewport: { width, height } })).newPage();
    const found: string[] = [];
    await everyPage(page, server, width, async (name) => {
      found.push(...(await axe(page)).map((v) => `${name} @${width}: ${v}`));
      await page.screenshot({ path: `${shots}/${name}-${width}.png` });
    });
    expect(found).toEqual([]);
  }
});

test("nothing scrolls sideways at 360 px", async ({ browser, server }) => {
  const page = await (await browser.newContext({ viewport: { width: 360, height: 740 } })).newPage();
  const wide: string[] = [];
  await everyPage(page, server, 360, async (name) => {
    const by = await overflow(page);
    if (by > 0) wide.push(`${name}: ${by}px`);
  });
  expect(wide).toEqual([]);
});

test("a keyboard alone opens a record from the list, edits it and settles a conflict", async ({ browser, server }) => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  const other = await (await browser.newContext()).newPage();
  await signIn(page, server, "alice");
  await signIn(other, server, "alice");

  // Tab to the list's first record and open it with Enter.
  const firstLink = page.getByTestId("list").locator("tbody tr a.row-link").first();
  const title = (await firstLink.textContent()) ?? "";
  for (let i = 0; i < 60 && !(await firstLink.evaluate((e) => e === document.activeElement)); i++) {
    await page.keyboard.press("Tab");
  }
  await expect(firstLink).toBeFocused();
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("detail-title")).toHaveText(title);
  const id = decodeURIComponent(new URL(page.url()).hash.split("/").pop()!);

  // Tab to Notes, type, Tab away: saved.
  const notes = page.getByTestId("field-notes-input");
  for (let i = 0; i < 40 && !(await notes.evaluate((e) => e === document.activeElement)); i++) {
    await page.keyboard.press("Tab");
  }
  await expect(notes).toBeFocused();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.type("Typed with the keyboard");
  await page.keyboard.press("Tab");
  await expect.poll(() => serverQuery(server, "SELECT notes FROM jobs WHERE id = ?", id)).toEqual([["Typed with the keyboard"]]);

  // A conflict: offline here, the other device saves the same field; back online, the alert takes
  // focus, Tab stays inside it, and Enter on "Keep mine" settles it.
  await ctx.setOffline(true);
  await expect(page.getByTestId("status")).toHaveAttribute("data-phase", "offline");
  await notes.focus();
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.type("Mine, from the keyboard");
  await page.keyboard.press("Tab");
  await openRecord(other, server, "jobs", id);
  await other.getByTestId("field-notes-input").fill("Theirs");
  await other.getByTestId("field-notes-input").blur();
  await expect.poll(() => serverQuery(server, "SELECT notes FROM jobs WHERE id = ?", id)).toEqual([["Theirs"]]);
  await ctx.setOffline(false);
  const dialog = page.getByTestId("conflict");
  await expect(dialog).toBeVisible({ timeout: 30_000 });
  await expect(page.getByTestId("conflict-keep-mine")).toBeFocused();
  expect(await axe(page)).toEqual([]);
  for (let i = 0; i < 6; i++) {
    await page.keyboard.press("Tab");
    expect(await dialog.evaluate((d) => d.contains(document.activeElement))).toBe(true);
  }
  while (!(await page.getByTestId("conflict-keep-mine").evaluate((e) => e === document.activeElement))) {
    await page.keyboard.press("Tab");
  }
  await page.keyboard.press("Enter");
  await expect(dialog).toHaveCount(0);
  await expect(notes).toHaveValue("Mine, from the keyboard");
  await expect
    .poll(() => other.evaluate(async (id) => {
      const d = await window.moat!.detailView("jobs", id);
      const f = d.sections.flatMap((s) => s.fields).find((x) => x.field === "notes");
      return f?.cell.edit_text;
    }, id))
    .toBe("Mine, from the keyboard");
});
