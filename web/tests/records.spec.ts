// Records as a field team works with them: create, edit and delete a job online and offline (the
// offline ones listed in the pending panel and arriving once), pick a customer, edit line items with a
// total, "Assigned to me" as a technician, and a currency conflict settled by "Edit…" that stores
// exactly the typed amount at scales 0, 2 and 3.
import type { Page } from "@playwright/test";
import { test, expect, signIn, openRecord, serverQuery, setPriceScale, shots, type Server } from "./fixtures";


function jobWithTitle(server: Server, title: string): unknown[][] {
  return serverQuery(server, "SELECT id, price_cents, customer_id, status FROM jobs WHERE title = ?", title);
}

/** Fills the new-job form and creates it; returns the new record's id (from the URL). */
async function createJob(page: Page, title: string, customerSearch: string, price: string): Promise<string> {
  await page.getByTestId("type-jobs").click();
  await page.getByTestId("list-new").click();
  await expect(page.getByTestId("new-record")).toBeVisible();
  await page.getByLabel("Title").fill(title);
  await page.getByLabel("Title").blur();
  const picker = page.getByTestId("field-customer_id-input");
  await picker.fill(customerSearch);
  await expect(page.getByTestId("field-customer_id-option").first()).toContainText(customerSearch);
  await picker.press("ArrowDown");
  await picker.press("ArrowUp");
  await picker.press("Enter");
  await page.getByTestId("field-price_cents-input").fill(price);
  await page.getByTestId("field-price_cents-input").blur();
  await page.getByTestId("new-create").click();
  await expect(page.getByTestId("detail-title")).toHaveText(title);
  return decodeURIComponent(new URL(page.url()).hash.split("/").pop()!);
}

test("create, edit and delete a job online and offline; pick a customer", async ({ browser, server }) => {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await signIn(page, server, "alice");

  // Online: the new job reaches the server, with the customer picked and the price in cents.
  const online = await createJob(page, "Fit a new boiler", "Harbor", "250.00");
  await expect.poll(() => jobWithTitle(server, "Fit a new boiler")).toHaveLength(1);
  const [[id, cents, customer, status]] = jobWithTitle(server, "Fit a new boiler") as [[string, number, string, string]];
  expect(id).toBe(online);
  expect(cents).toBe(25000);
  expect(customer).toMatch(/^cust-a-/);
  expect(status).toBe("open");
  const link = page.getByTestId("field-customer_id-link");
  await expect(link).toContainText("Harbor");
  await page.screenshot({ path: `${shots}/create-detail-1366.png` });

  // A required field left empty is refused on the form, naming the field; nothing is written.
  await page.getByTestId("type-jobs").click();
  await page.getByTestId("list-new").click();
  await page.getByTestId("new-create").click();
  await expect(page.getByTestId("new-error")).toHaveText("Title: a value is required");

  // Offline: create one, edit one, delete one; the pending panel says what waits.
  await ctx.setOffline(true);
  await expect(page.getByTestId("status")).toHaveAttribute("data-phase", "offline");
  const offline = await createJob(page, "Offline inspection", "Maple", "99.5");
  await openRecord(page, server, "jobs", "job-a-00003");
  await page.getByTestId("field-notes-input").fill("Written offline");
  await page.getByTestId("field-notes-input").blur();
  await expect(page.getByTestId("field-notes-unsynced")).toBeVisible();
  await openRecord(page, server, "jobs", "job-a-00004");
  await page.getByTestId("detail-delete").click();
  await expect(page.getByTestId("confirm-delete")).toBeVisible();
  await page.getByTestId("confirm-delete-yes").click();
  await expect(page.getByTestId("list")).toBeVisible();
  await expect(page.getByTestId("status-pending")).toHaveAttribute("data-count", "3");
  await page.getByTestId("status-pending").click();
  const items = page.getByTestId("pending-item");
  await expect(items).toHaveCount(3);
  await expect(items.nth(0)).toContainText("Created Job Offline inspection");
  await expect(items.nth(1)).toContainText("Notes: Written offline");
  await expect(items.nth(2)).toContainText("Deleted Job");
  await page.screenshot({ path: `${shots}/pending-panel-1366.png` });
  await page.keyboard.press("Escape");
  await expect(page.getByTestId("pending-panel")).toHaveCount(0);
  expect(jobWithTitle(server, "Offline inspection")).toHaveLength(0);

  await ctx.setOffline(false);
  await expect(page.getByTestId("status-pending")).toHaveAttribute("data-count", "0", { timeout: 30_000 });
  await expect.poll(() => jobWithTitle(server, "Offline inspection")).toHaveLength(1);
  expect((jobWithTitle(server, "Offline inspection")[0] as unknown[])[0]).toBe(offline);
  expect(serverQuery(server, "SELECT notes FROM jobs WHERE id = 'job-a-00003'")).toEqual([["Written offline"]]);
  expect(serverQuery(server, "SELECT count(*) FROM jobs WHERE id = 'job-a-00004'")).toEqual([[0]]);
  // Deleting online, from the record's page.
  await openRecord(page, server, "jobs", online);
  await page.getByTestId("detail-delete").click();
  await page.getByTestId("confirm-delete-yes").click();
  await expect.poll(() => jobWithTitle(server, "Fit a new boiler")).toHaveLength(0);
});

test("line items are edited with amounts and a total", async ({ page, server }) => {
  await signIn(page, server, "tom");
  await openRecord(page, server, "jobs", "job-a-00002");
  // Seeded: 3 × $7.62.
  await expect(page.getByTestId("field-line_items-total")).toHaveText("$22.86");
  await page.getByTestId("field-line_items-add").click();
  await page.getByTestId("line-item-1-sku").fill("Labour");
  await page.getByTestId("line-item-1-qty").fill("1.5");
  await page.getByTestId("line-item-1-unit_price_cents").fill("80");
  await page.getByTestId("field-notes-input").focus();
  await expect(page.getByTestId("field-line_items-total")).toHaveText("$142.86");
  await expect
    .poll(() => serverQuery(server, "SELECT line_items FROM jobs WHERE id = 'job-a-00002'"))
    .toEqual([['[{"qty":3,"sku":"SKU-10021","unit_price_cents":762},{"qty":1.5,"sku":"Labour","unit_price_cents":8000}]']]);
  // A price the currency cannot hold is refused, naming the item and the column.
  await page.getByTestId("line-item-1-unit_price_cents").fill("1.234");
  await page.getByTestId("field-notes-input").focus();
  await expect(page.getByTestId("field-line_items-error")).toHaveText("Line items, item 2: Unit price: at most 2 decimal places");
  await page.screenshot({ path: `${shots}/line-items-1366.png` });
});

test("a technician's Assigned to me shows their jobs, by name", async ({ page, server }) => {
  await signIn(page, server, "tom");
  const mine = page.getByTestId("view-mine");
  await expect(mine).toContainText("1,250");
  await mine.click();
  await expect(page.getByTestId("list-count")).toHaveText("1,250 records");
  const assignees = await page.locator('td[data-field="assignee"]').allTextContents();
  expect(assignees.length).toBe(50);
  expect(new Set(assignees)).toEqual(new Set(["Tom Technician"]));
  await page.getByTestId("filter-status").selectOption("open");
  const [[open]] = serverQuery(server, "SELECT count(*) FROM jobs WHERE assignee = 'tom' AND status = 'open'") as [[number]];
  await expect(page.getByTestId("list-count")).toHaveText(`${open.toLocaleString("en-US")} records`);
  await page.getByTestId("page-2").click();
  await expect(page.getByTestId("list-range")).toContainText("51–");
  // Customers are read-only for a technician: no "New" button there, none on the record either.
  await page.getByTestId("type-customers").click();
  await expect(page.getByTestId("list-title")).toHaveText("Customers");
  await expect(page.getByTestId("list-new")).toHaveCount(0);
});

test("a currency conflict settled by Edit… stores exactly the typed amount at scales 0, 2 and 3", async ({ browser, server }) => {
  const JOB = "job-a-00077";
  const mineCtx = await browser.newContext();
  const mine = await mineCtx.newPage();
  const theirs = await (await browser.newContext()).newPage();
  await signIn(mine, server, "alice");
  await signIn(theirs, server, "alice");
  for (const [scale, typed, stored, mineTyped, theirsTyped, theirsStored] of [
    [0, "250", 250, "7", "8", 8],
    [2, "250.50", 25050, "7.01", "8.02", 802],
    [3, "2.125", 2125, "7.001", "8.002", 8002],
  ] as const) {
    await setPriceScale(theirs, server, scale);
    await expect(theirs.getByTestId("status-pending")).toHaveAttribute("data-count", "0");
    await openRecord(mine, server, "jobs", JOB);
    await openRecord(theirs, server, "jobs", JOB);
    await mineCtx.setOffline(true);
    await expect(mine.getByTestId("status")).toHaveAttribute("data-phase", "offline");
    await mine.getByTestId("field-price_cents-input").fill(mineTyped);
    await mine.getByTestId("field-price_cents-input").blur();
    await theirs.getByTestId("field-price_cents-input").fill(theirsTyped);
    await theirs.getByTestId("field-price_cents-input").blur();
    await expect
      .poll(() => serverQuery(server, "SELECT price_cents FROM jobs WHERE id = ?", JOB))
      .toEqual([[theirsStored]]);
    await mineCtx.setOffline(false);
    await expect(mine.getByTestId("conflict")).toBeVisible({ timeout: 30_000 });
    await mine.getByTestId("conflict-edit").click();
    await expect(mine.getByTestId("conflict-edit-input")).toHaveValue(mineTyped);
    await mine.getByTestId("conflict-edit-input").fill(typed);
    await mine.getByTestId("conflict-edit-save").click();
    await expect(mine.getByTestId("conflict")).toHaveCount(0);
    await expect
      .poll(() => serverQuery(server, "SELECT price_cents FROM jobs WHERE id = ?", JOB))
      .toEqual([[stored]]);
  }
});

test("a record's page shows its history: who changed which fields, when", async ({ browser, server }) => {
  const alice = await (await browser.newContext()).newPage();
  const tom = await (await browser.newContext()).newPage();
  await signIn(alice, server, "alice");
  await signIn(tom, server, "tom");
  await openRecord(alice, server, "jobs", "job-a-00006");
  await alice.getByTestId("field-notes-input").fill("Call before arrival");
  await alice.getByTestId("field-notes-input").blur();
  await expect.poll(() => serverQuery(server, "SELECT notes FROM jobs WHERE id = 'job-a-00006'")).toEqual([["Call before arrival"]]);
  await openRecord(tom, server, "jobs", "job-a-00006");
  const entries = tom.getByTestId("history-entry");
  await expect(entries.first()).toContainText("Changed by Alice Admin: Notes");
  await expect(entries).toHaveCount(1);
  // Live: Tom's own edit shows at the top once the server has it.
  await tom.getByTestId("field-notes-input").fill("Dog in the yard");
  await tom.getByTestId("field-notes-input").blur();
  await expect(entries.first()).toContainText("Changed by Tom Technician: Notes");
});
