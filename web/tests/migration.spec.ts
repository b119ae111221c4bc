// A schema migration reaches open browsers: the demo's migrations (a job priority and a Vehicles
// object type) are applied inside the running server while an admin's page stays open and a
// technician is offline with a pending edit. Both end on the new schema, showing the new field and object type, and the
// pending edit arrives. The migration is additive, so nobody re-downloads: every client catches up
// from its cursor (the server's snapshot counter does not move; the time to the open page is printed).
import { test, expect, signIn, openRecord, firstRowIds, migrateLive, serverQuery } from "./fixtures";

test("a migration reaches open pages and keeps pending edits", async ({ browser, server }) => {
  const techCtx = await browser.newContext();
  const tech = await techCtx.newPage();
  const admin = await (await browser.newContext()).newPage();
  await signIn(tech, server, "tom");
  await signIn(admin, server, "alice");
  const [id] = await firstRowIds(admin, 1);
  await openRecord(admin, server, "jobs", id!);
  await openRecord(tech, server, "jobs", id!);
  await expect(admin.getByTestId("field-priority")).toHaveCount(0);

  await techCtx.setOffline(true);
  await expect(tech.getByTestId("status")).toHaveAttribute("data-phase", "offline");
  await tech.getByTestId("field-notes-input").fill("Noted offline, before the migration");
  await tech.getByTestId("field-notes-input").blur();
  await expect(tech.getByTestId("status-pending")).toHaveAttribute("data-count", "1");

  const snapshots = async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    return Number(/^moat_snapshots_total (\d+)$/m.exec(text)?.[1]);
  };
  const snapshotsBefore = await snapshots();
  const out = migrateLive(server);
  const migrated = Date.now();
  expect(out).toContain("[2/2] 0002_vehicles applied");

  // The admin's open page follows by itself: the new field, the new object type.
  await expect(admin.getByTestId("field-priority")).toBeVisible({ timeout: 45_000 });
  console.log(`live migration applied → the new field on the open page: ${Date.now() - migrated} ms`);
  await expect(admin.getByTestId("type-vehicles")).toContainText("Vehicles");
  await expect(admin.getByTestId("status")).toHaveAttribute("data-phase", "live");

  // The technician comes back: the replica migrates, the offline edit goes through.
  await techCtx.setOffline(false);
  await expect(tech.getByTestId("status")).toHaveAttribute("data-phase", "live", { timeout: 45_000 });
  await expect(tech.getByTestId("status-pending")).toHaveAttribute("data-count", "0");
  await expect(tech.getByTestId("field-priority")).toBeVisible();
  await expect(tech.getByTestId("status-rejected")).toHaveCount(0);
  expect(await snapshots(), "both caught up from their cursors: no snapshot was sent").toBe(snapshotsBefore);
  await expect(admin.getByTestId("field-notes-input")).toHaveValue("Noted offline, before the migration");
  expect(serverQuery(server, "SELECT notes FROM jobs WHERE id = ?1", id!)).toEqual([
    ["Noted offline, before the migration"],
  ]);

  // And the new field is editable and syncs like any other.
  await admin.getByTestId("field-priority-input").selectOption("low");
  await expect(tech.getByTestId("field-priority-input")).toHaveValue("low");
});
