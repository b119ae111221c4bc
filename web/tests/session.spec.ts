// One scripted session in the browser; the native client runs the same script
// (tests/python/test_driver_session.py) and both must report the events of
// tests/fixtures/driver/session.json: both shells run the one driver in the core's crate.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { SdkEvent, SyncStatus } from "../src/sdk";
import { test, expect, signIn } from "./fixtures";

const JOB = "job-a-00123";
const expected = (
  JSON.parse(readFileSync(join(resolve(import.meta.dirname, "../.."), "tests/fixtures/driver/session.json"), "utf8")) as {
    events: string[];
  }
).events;

declare global {
  interface Window {
    sessionLog?: string[];
  }
}

test("the scripted session reports what the native client reports", async ({ page, server }) => {
  await signIn(page, server, "alice");
  const status = () => page.evaluate(() => window.moat!.status());
  const until = async (what: string, ok: (s: SyncStatus) => boolean) =>
    expect.poll(async () => ok(await status()), { message: what, timeout: 20_000 }).toBe(true);
  // Indexes built too (the status says when they are): the script starts from a quiet device.
  await until("live", (s) => s.phase === "live" && s.pending === 0 && !s.indexing);
  // Events the worker sent before this call's answer have reached the page: record from here on.
  await page.evaluate(async () => {
    await window.moat!.status();
    const log: string[] = (window.sessionLog = []);
    window.moat!.on((ev: SdkEvent) => {
      const entry =
        ev.type === "status"
          ? `status ${ev.status.phase} ${ev.status.pending} ${ev.status.conflicts} ${ev.status.rejected}`
          : ev.type === "tables"
            ? null
            : ev.type;
      if (entry !== null && log[log.length - 1] !== entry) log.push(entry);
    });
  });

  await page.evaluate((id) => window.moat!.edit("jobs", id, "notes", { type: "text", value: "scripted session: online" }), JOB);
  await until("the edit acknowledged", (s) => s.phase === "live" && s.pending === 0);
  await page.evaluate((id) => window.moat!.updateRow("jobs", id, "tenant_id", { type: "text", value: "company-b" }), JOB);
  await until("the refusal", (s) => s.rejected === 1 && s.pending === 0);
  await page.evaluate(async () => {
    const [refused] = await window.moat!.rejected();
    await window.moat!.dismissRejected(refused!.mutation_id);
  });
  await until("dismissed", (s) => s.rejected === 0);
  await page.evaluate(() => window.moat!.goOffline());
  await until("offline", (s) => s.phase === "offline");
  await page.evaluate((id) => window.moat!.edit("jobs", id, "notes", { type: "text", value: "scripted session: offline" }), JOB);
  await until("pending offline", (s) => s.phase === "offline" && s.pending === 1);
  await page.evaluate(() => window.moat!.goOnline());
  await until("live again", (s) => s.phase === "live" && s.pending === 0);

  await expect.poll(() => page.evaluate(() => window.sessionLog!.at(-1))).toBe(expected.at(-1));
  expect(await page.evaluate(() => window.sessionLog)).toEqual(expected);
});
