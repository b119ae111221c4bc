// Sync health: a company's admin sees every device of the company (who, which app, when last seen,
// what waits on it); a technician has no such page and the server refuses them the list.
import { test, expect, signIn, shots } from "./fixtures";

test("an admin's Sync health page lists the company's devices, live and disconnected", async ({ browser, server }) => {
  const admin = await (await browser.newContext()).newPage();
  const tech = await (await browser.newContext()).newPage();
  await signIn(admin, server, "alice");
  await signIn(tech, server, "tom");

  // Only admins have the page.
  await expect(tech.getByTestId("nav-sync-health")).toHaveCount(0);
  await admin.getByTestId("nav-sync-health").click();
  await expect(admin.getByTestId("sync-health")).toBeVisible();
  const alice = admin.getByTestId("device-alice");
  const tom = admin.getByTestId("device-tom");
  await expect(alice).toContainText("Web browser");
  await expect(alice.getByTestId("last-seen")).toHaveText("Connected");
  await expect(tom.getByTestId("last-seen")).toHaveText("Connected");
  await expect(tom).toContainText("technician");

  // Tom's device goes offline: it is shown as last seen moments ago.
  await tech.evaluate(() => window.moat!.goOffline());
  await admin.getByRole("button", { name: "Refresh" }).click();
  await expect(tom.getByTestId("last-seen")).toHaveText("just now");
  await expect(admin.getByTestId("sync-health-summary")).toContainText("1 connected of 2 devices");
  await admin.screenshot({ path: `${shots}/sync-health.png` });

  // The technician's own request is refused by the server (it is not only the menu that hides it).
  const refused = await tech.evaluate(async () => {
    await window.moat!.goOnline();
    for (let i = 0; i < 100 && (await window.moat!.status()).phase !== "live"; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    let listed = false;
    const off = window.moat!.on((ev) => {
      if (ev.type === "fleet") listed = true;
    });
    await window.moat!.requestDevices();
    await new Promise((r) => setTimeout(r, 1000));
    off();
    return !listed;
  });
  expect(refused).toBe(true);
  await expect(tom.getByTestId("last-seen")).toHaveText("Connected", { timeout: 15_000 });
});
