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

test("while the network is away the user may try again or choose to work offline, and that choice outlasts the network's return", async ({ browser, server }) => {
  const ctx = await browser.newContext();
  const tech = await ctx.newPage();
  await signIn(tech, server, "tom");
  await expect(tech.getByTestId("status")).toHaveAttribute("data-phase", "live");
  await expect(tech.getByTestId("toggle-online")).toHaveText("Work offline");
  await expect(tech.getByTestId("reconnect")).toHaveCount(0);

  // The network goes away; the user chose nothing: "Offline", with "Try now" beside the switch,
  // which still offers to work offline.
  await ctx.setOffline(true);
  await expect(tech.getByTestId("status-phase")).toHaveText("Offline");
  await expect(tech.getByTestId("reconnect")).toHaveText("Try now");
  await expect(tech.getByTestId("toggle-online")).toHaveText("Work offline");
  // Both fit on a phone.
  await tech.setViewportSize({ width: 360, height: 740 });
  expect(await tech.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)).toBe(0);
  await tech.getByTestId("toggle-online").click();
  await expect(tech.getByTestId("status-phase")).toHaveText("Working offline");
  await expect(tech.getByTestId("toggle-online")).toHaveText("Go online");
  await expect(tech.getByTestId("reconnect")).toHaveCount(0);

  // The network comes back (told to the worker and answered before the status is read): the choice holds.
  await ctx.setOffline(false);
  await tech.evaluate(() => window.moat!.networkChanged(true));
  expect(await tech.evaluate(() => window.moat!.status().then((s) => [s.phase, s.held_offline]))).toEqual([
    "offline",
    true,
  ]);
  await expect(tech.getByTestId("status-phase")).toHaveText("Working offline");
  await tech.getByTestId("toggle-online").click();
  await expect(tech.getByTestId("status")).toHaveAttribute("data-phase", "live");
  await expect(tech.getByTestId("toggle-online")).toHaveText("Work offline");
});
