// Rights from the server, shown in the UI: what a technician's role may not write (Customers, a
// job's price and title) is drawn read-only, so there is nothing to type into and nothing refused later.
import { test, expect, signIn, openRecord, axe } from "./fixtures";

test("a technician cannot type into what the role may not write", async ({ browser, server }) => {
  const tech = await (await browser.newContext()).newPage();
  const admin = await (await browser.newContext()).newPage();
  await signIn(tech, server, "tom");
  await signIn(admin, server, "alice");

  await tech.getByTestId("type-customers").click();
  await expect(tech.getByTestId("list-title")).toHaveText("Customers");
  const row = tech.getByTestId("list").locator("tbody tr").first();
  const id = (await row.getAttribute("data-testid"))!.replace(/^row-/, "");
  await openRecord(tech, server, "customers", id);
  await expect(tech.getByTestId("field-phone-value")).toBeVisible();
  await expect(tech.getByTestId("field-phone-input")).toHaveCount(0);
  await expect(tech.locator("main input, main textarea, main select")).toHaveCount(0);

  // The admin's page of the same customer is editable.
  await openRecord(admin, server, "customers", id);
  await expect(admin.getByTestId("field-phone-input")).toBeVisible();

  // On a job, the technician writes notes but not the price.
  await openRecord(tech, server, "jobs", "job-a-00042");
  await expect(tech.getByTestId("field-notes-input")).toBeVisible();
  await expect(tech.getByTestId("field-price_cents-input")).toHaveCount(0);
  // A delete removes every field, the read-only ones too: no Delete for the technician.
  await expect(tech.getByTestId("detail-delete")).toHaveCount(0);
  await expect(admin.getByTestId("detail-delete")).toHaveCount(1);
  await expect(tech.getByTestId("status-rejected")).toHaveCount(0);
});

test("a refused change is listed in the user's words; trying it again is checked first; it can be discarded", async ({ page, server }) => {
  await signIn(page, server, "tom");
  await openRecord(page, server, "customers", "cust-a-0038");
  const name = (await page.getByTestId("detail-title").textContent()) ?? "";
  // Past the UI (an old app, a script): the server refuses it, in the user's words.
  await page.evaluate(() => window.moat!.updateRow("customers", "cust-a-0038", "phone", { type: "text", value: "+1-555-9999" }));
  await page.getByTestId("status-rejected").click();
  const item = page.getByTestId("rejected").locator("li").first();
  await expect(item.getByTestId("rejected-what")).toHaveText(`Customer ${name}: Phone: +1-555-9999 was not saved`);
  await expect(item.locator(".error").first()).toContainText("Customers are read-only for your role");
  expect(await axe(page)).toEqual([]);
  await item.getByTestId("rejected-retry").click();
  await expect(item.getByTestId("rejected-retry-error")).toHaveText("Still refused: Customers are read-only for your role");
  await item.getByTestId("rejected-dismiss").click();
  await expect(page.getByTestId("rejected").locator("li")).toHaveCount(0);
  await expect(page.getByTestId("status-rejected")).toHaveCount(0);
});
