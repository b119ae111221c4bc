// Offline: a context goes offline (its network, and the user's "Work offline"), edits, reloads while
// still offline (the edits are still shown, from OPFS, with the app shell from the service worker, and
// the user's choice is remembered), its network comes back (the choice still holds), the user goes
// online, and the server and the other context receive each edit once.
import { test, expect, signIn, openRecord, firstRowIds, serverQuery } from "./fixtures";

test("offline edits survive a reload and arrive exactly once", async ({ browser, server }) => {
  const techCtx = await browser.newContext();
  const tech = await techCtx.newPage();
  const admin = await (await browser.newContext()).newPage();
  await signIn(tech, server, "tom");
  await signIn(admin, server, "alice");
  await tech.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  const ids = await firstRowIds(tech, 3);
  expect(ids).toHaveLength(3);

  await techCtx.setOffline(true);
  // The user works offline too: the database remembers it, so that the reload below cannot connect
  // whatever this Chromium's offline emulation does to a worker's sockets (it need not stop them).
  await tech.evaluate(() => window.moat!.goOffline());
  await expect(tech.getByTestId("status")).toHaveAttribute("data-phase", "offline");
  await expect(tech.getByTestId("status-phase")).toHaveText("Working offline");
  const notes = ids.map((id, n) => `Offline note ${n + 1} for ${id}`);
  for (const [n, id] of ids.entries()) {
    await openRecord(tech, server, "jobs", id);
    await tech.getByTestId("field-notes-input").fill(notes[n]!);
    await tech.getByTestId("field-notes-input").blur();
    await expect(tech.getByTestId("status-pending")).toHaveAttribute("data-count", String(n + 1));
  }

  // Reload with no network: the shell comes from the service worker, the data from OPFS.
  await tech.reload();
  await expect(tech.getByTestId("status-phase")).toHaveText("Working offline");
  await expect(tech.getByTestId("status")).toHaveAttribute("data-phase", "offline");
  await expect(tech.getByTestId("status-pending")).toHaveAttribute("data-count", "3");
  await expect(tech.getByTestId("field-notes-input")).toHaveValue(notes[2]!);
  // Nothing has reached the server or the admin yet.
  expect(serverQuery(server, "SELECT count(*) FROM moat_mutations WHERE user_id = 'tom'")).toEqual([[0]]);
  const adminNotes = () =>
    admin.evaluate((ids) => Promise.all(ids.map(async (id) => {
      const d = await window.moat!.detailView("jobs", id);
      return d.sections.flatMap((s) => s.fields).find((f) => f.field === "notes")?.cell.display ?? "";
    })), ids);
  expect(await adminNotes()).not.toContain(notes[0]);

  // The network is back; the user still works offline until they go online.
  await techCtx.setOffline(false);
  await expect(tech.getByTestId("status-phase")).toHaveText("Working offline");
  await tech.getByTestId("toggle-online").click();
  await expect(tech.getByTestId("status")).toHaveAttribute("data-phase", "live");
  await expect(tech.getByTestId("status-pending")).toHaveAttribute("data-count", "0");
  await expect.poll(adminNotes).toEqual(notes);
  // Each edit was applied once: three mutations, and each note is in exactly one log entry.
  expect(serverQuery(server, "SELECT count(*) FROM moat_mutations WHERE user_id = 'tom'")).toEqual([[3]]);
  for (const note of notes) {
    expect(serverQuery(server, "SELECT count(*) FROM moat_log WHERE instr(entry, ?1) > 0", note)).toEqual([[1]]);
  }
});
