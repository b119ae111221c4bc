// Customize mode: an admin adds a "Warranty expires" date field to Jobs, places it in the technicians'
// layout and makes it required; a technician's open detail page shows it without a reload (time
// printed). The admin adds a "Vehicles" object type with three fields and a layout: it appears in the
// technician's object list, live. A technician who was offline meanwhile keeps the edit made offline,
// and it syncs. A rollback restores the previous layout on the open page. The editor is used by
// keyboard where it matters (moving a field), photographed, and checked with axe-core.
import { test, expect, signIn, openRecord, firstRowIds, serverQuery, shots, axe } from "./fixtures";

test("an admin customizes objects, fields and layouts; every open client follows", async ({ browser, server }) => {
  const tech = await (await browser.newContext()).newPage();
  const offlineCtx = await browser.newContext();
  const offline = await offlineCtx.newPage();
  const admin = await (await browser.newContext({ viewport: { width: 1366, height: 860 } })).newPage();
  await signIn(tech, server, "tom");
  await signIn(offline, server, "tom");
  await signIn(admin, server, "alice");
  const [id] = await firstRowIds(tech, 1);
  await openRecord(tech, server, "jobs", id!);
  await expect(tech.getByTestId("field-warranty_expires")).toHaveCount(0);

  // Tom's second device (a phone) goes offline and edits a job's notes: the edit waits on the phone.
  const [phoneJob] = await firstRowIds(offline, 1);
  await offlineCtx.setOffline(true);
  await offline.evaluate(() => window.moat!.goOffline());
  await expect(offline.getByTestId("status")).toHaveAttribute("data-phase", "offline");
  await openRecord(offline, server, "jobs", phoneJob!);
  const note = `Written offline while the admin customized (${Date.now()})`;
  await offline.getByTestId("field-notes-input").fill(note);
  await offline.getByTestId("field-notes-input").blur();
  await expect(offline.getByTestId("status-pending")).toHaveAttribute("data-count", "1");

  // The admin opens Customize and adds the field.
  await admin.getByTestId("nav-customize").click();
  await expect(admin.getByTestId("customize")).toBeVisible();
  await admin.getByTestId("customize-type-jobs").click();
  await admin.getByLabel("New field").fill("Warranty expires");
  await admin.getByLabel("Type", { exact: true }).selectOption("date");
  await admin.getByTestId("add-field").click();
  await admin.getByLabel("Warranty expires is required").check();
  // Placed in the technicians' layout, first section; moved up by keyboard (the drag's alternative).
  await admin.getByTestId("layout-role").selectOption("technician");
  const own = admin.getByTestId("own-layout");
  if (await own.count()) await own.click();
  await admin.getByTestId("add-to-section-0").selectOption("warranty_expires");
  const placed = admin.getByTestId("layout-editor").getByTestId("layout-field-warranty_expires");
  await expect(placed).toBeVisible();
  const order = () =>
    admin.getByTestId("layout-section-0").locator("[data-testid^=layout-field-]").evaluateAll((els) =>
      els.map((e) => e.getAttribute("data-testid")),
    );
  const before = await order();
  await admin.getByRole("button", { name: "Move Warranty expires earlier in the section" }).focus();
  await admin.keyboard.press("Enter");
  const after = await order();
  expect(after.indexOf("layout-field-warranty_expires")).toBe(before.indexOf("layout-field-warranty_expires") - 1);
  // The preview shows the technicians' page with the new, required field.
  await expect(admin.getByTestId("layout-preview").getByTestId("preview-warranty_expires")).toContainText("Warranty expires*");
  await expect(admin.getByTestId("draft-changes")).toContainText("Jobs: added the field Warranty expires");
  await admin.screenshot({ path: `${shots}/customize-editor-1366.png`, fullPage: true });
  expect(await axe(admin)).toEqual([]);

  const published = Date.now();
  await admin.getByTestId("publish").click();
  await expect(admin.getByTestId("publish-message")).toContainText("Published version 2");
  await expect(tech.getByTestId("field-warranty_expires")).toBeVisible({ timeout: 20_000 });
  console.log(`field published → shown on the technician's open page: ${Date.now() - published} ms`);
  await expect(tech.getByTestId("field-warranty_expires").locator(".required")).toHaveCount(1);
  // The server enforces it: the stored layout names the field, the column exists.
  expect(serverQuery(server, "SELECT count(*) FROM pragma_table_info('jobs') WHERE name = 'warranty_expires'")).toEqual([[1]]);

  // A new object type, Vehicles, with three fields and a layout.
  await admin.getByTestId("new-object-type").click();
  const dialog = admin.getByTestId("new-type-dialog");
  await dialog.getByLabel("Label (one record)").fill("Vehicle");
  await dialog.getByLabel("Plural label").fill("Vehicles");
  await admin.getByTestId("create-object-type").click();
  await expect(admin.getByTestId("customize-type-vehicles")).toHaveAttribute("aria-pressed", "true");
  for (const [label, kind] of [["Model", "text"], ["Next service", "date"]] as const) {
    await admin.getByLabel("New field").fill(label);
    await admin.getByLabel("Type", { exact: true }).selectOption(kind);
    await admin.getByTestId("add-field").click();
    await admin.getByTestId("add-to-section-0").selectOption({ label });
  }
  await expect(admin.getByTestId("layout-preview").getByTestId("preview-next_service")).toBeVisible();
  await admin.screenshot({ path: `${shots}/customize-new-type-1366.png`, fullPage: true });
  const typed = Date.now();
  await admin.getByTestId("publish").click();
  await expect(admin.getByTestId("publish-message")).toContainText("Published version 3");
  await expect(tech.getByTestId("type-vehicles")).toBeVisible({ timeout: 20_000 });
  console.log(`object type published → in the technician's object list: ${Date.now() - typed} ms`);

  // The phone comes back: its offline edit is kept and syncs onto the new schema; it shows both changes.
  await offlineCtx.setOffline(false);
  await offline.evaluate(() => window.moat!.goOnline());
  await expect(offline.getByTestId("status")).toHaveAttribute("data-phase", "live", { timeout: 30_000 });
  await expect(offline.getByTestId("status-pending")).toHaveAttribute("data-count", "0");
  await expect(offline.getByTestId("type-vehicles")).toBeVisible();
  await expect(offline.getByTestId("field-warranty_expires")).toBeVisible();
  expect(serverQuery(server, "SELECT notes FROM jobs WHERE id = ?", phoneJob!)).toEqual([[note]]);

  // History: roll back to the metadata as it was; the technician's open page loses the field.
  await expect(admin.getByTestId("customize-history")).toContainText("Version 3");
  const rolled = Date.now();
  await admin.getByTestId("rollback-1").click();
  await expect(admin.getByTestId("publish-message")).toContainText("Published version 4");
  await expect(tech.getByTestId("field-warranty_expires")).toHaveCount(0, { timeout: 20_000 });
  await expect(tech.getByTestId("type-vehicles")).toHaveCount(0);
  console.log(`rollback → previous layout on the technician's open page: ${Date.now() - rolled} ms`);
  await expect(tech.getByTestId("detail-title")).toBeVisible();
});

test("a draft's problems and a removal's loss are shown before anything is published", async ({ browser, server }) => {
  const admin = await (await browser.newContext()).newPage();
  await signIn(admin, server, "alice");
  await admin.goto(`${server.url}/#/customize`);
  await admin.getByTestId("customize-type-jobs").click();
  // A choice field with its only option removed: the core says what is wrong, publish stays off.
  await admin.getByLabel("New field").fill("Kind");
  await admin.getByLabel("Type", { exact: true }).selectOption("choice");
  await admin.getByTestId("add-field").click();
  await admin.getByRole("button", { name: "Remove option Option 1" }).click();
  await expect(admin.getByTestId("draft-problems")).toContainText("Kind: a choice needs at least one option");
  await expect(admin.getByTestId("publish")).toBeDisabled();
  await admin.getByRole("button", { name: "Remove Kind" }).click();

  // Removing a field that holds values asks again, naming what is lost; cancel keeps everything.
  await admin.getByTestId("remove-field-notes").click();
  await expect(admin.getByTestId("draft-changes")).toContainText("deletes data");
  await admin.getByTestId("publish").click();
  await expect(admin.getByTestId("confirm-destroy")).toBeVisible();
  await expect(admin.getByTestId("lost")).toContainText("Jobs: Notes");
  expect(await axe(admin)).toEqual([]);
  await admin.keyboard.press("Escape");
  await expect(admin.getByTestId("confirm-destroy")).toHaveCount(0);
  expect(serverQuery(server, "SELECT count(*) FROM pragma_table_info('jobs') WHERE name = 'notes'")).toEqual([[1]]);

  // A technician has no Customize and the server refuses one anyway.
  const tech = await (await browser.newContext()).newPage();
  await signIn(tech, server, "tom");
  await expect(tech.getByTestId("nav-customize")).toHaveCount(0);
  const answer = await tech.evaluate(async () => {
    const draft = await window.moat!.customization();
    return window.moat!.customize({ action: "publish", customization: draft, destroy: false });
  });
  expect(answer).toMatchObject({ result: "refused", code: "forbidden" });
});
