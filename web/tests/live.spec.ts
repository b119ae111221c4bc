// Two browser contexts of Company-A (admin and technician): an edit in one appears in the other's
// open list and detail page with no reload; the technician never sees what the rules hide.
import { mkdirSync } from "node:fs";
import { test, expect, signIn, shots } from "./fixtures";

test("an edit reaches the other context's open list and detail page live", async ({ browser, server }) => {
  mkdirSync(shots, { recursive: true });
  const admin = await (await browser.newContext()).newPage();
  const tech = await (await browser.newContext()).newPage();

  const started = Date.now();
  await signIn(admin, server, "alice");
  const firstList = Date.now() - started;
  await signIn(tech, server, "tom");

  // Object types come from object_metadata.
  await expect(admin.getByTestId("object-types")).toContainText("Jobs");
  await expect(admin.getByTestId("object-types")).toContainText("Customers");
  await expect(admin.getByTestId("list-title")).toHaveText("Jobs");
  await admin.screenshot({ path: `${shots}/list.png` });

  // The technician's list is open; the admin opens the first row's record.
  const firstRow = tech.getByTestId("list").locator("tbody tr").first();
  const rowId = (await firstRow.getAttribute("data-testid"))!.replace(/^row-/, "");
  await admin.goto(`${server.url}/#/o/jobs/${rowId}`);
  await expect(admin.getByTestId("detail-title")).toBeVisible();
  await admin.screenshot({ path: `${shots}/detail.png` });

  const statusCell = tech.getByTestId(`row-${rowId}`).locator('td[data-field="status"]');
  const before = await statusCell.textContent();
  const target = before?.includes("On hold") ? "done" : "on_hold";
  const targetLabel = target === "done" ? "Done" : "On hold";
  await admin.getByTestId("field-status-input").selectOption(target);
  await expect(statusCell).toHaveText(targetLabel);

  // The technician opens the record; the admin edits again; the open page follows.
  await tech.getByTestId(`row-${rowId}`).click();
  await expect(tech.getByTestId("field-status-input")).toHaveValue(target);
  await admin.getByTestId("field-status-input").selectOption("scheduled");
  await expect(tech.getByTestId("field-status-input")).toHaveValue("scheduled");

  // And the other way round: the technician's notes reach the admin's open page.
  await tech.getByTestId("field-notes-input").fill("Gate code 4411, dog is friendly.");
  await tech.getByTestId("field-notes-input").blur();
  await expect(admin.getByTestId("field-notes-input")).toHaveValue("Gate code 4411, dog is friendly.");

  // The rules hide internal_notes from technicians: the admin's layout has it, the technician's
  // page does not, and neither does the technician's database.
  await expect(admin.getByTestId("field-internal_notes")).toBeVisible();
  await expect(tech.getByTestId("field-internal_notes")).toHaveCount(0);
  await expect(tech.getByTestId("field-title-value")).toBeVisible(); // read-only for technicians
  await expect(tech.getByTestId("field-price_cents")).toContainText("Quoted price");
  const techHas = await tech.evaluate(async (id) => {
    const d = await window.moat!.detailView("jobs", id);
    return d.sections.flatMap((s) => s.fields.map((f) => f.field));
  }, rowId);
  expect(techHas).not.toContain("internal_notes");
  // A write the rules forbid is refused by the server and shown with its reason.
  await tech.evaluate(async (id) => {
    await window.moat!.updateRow("jobs", id, "title", { type: "text", value: "Renamed by a technician" });
  }, rowId);
  await expect(tech.getByTestId("status-rejected")).toBeVisible();
  await tech.getByTestId("status-rejected").click();
  await expect(tech.getByTestId("rejected")).toContainText("Title is read-only for your role");
  // In the user's words: the object type, the record's title, the field's label and the lost value.
  await expect(tech.getByTestId("rejected-what")).toContainText("Title: Renamed by a technician was not saved");
  await expect(tech.getByTestId("rejected-what")).toContainText("Job ");
  await expect(admin.getByTestId("detail-title")).not.toHaveText("Renamed by a technician");

  console.log(`time to first list render (sign-in → 5,000-job snapshot into OPFS → list): ${firstList} ms`);
});
