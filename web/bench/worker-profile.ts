// A CPU profile of the worker during a first sign-in (not part of `scripts/bench`): run with
//   cd web && MOAT_PROFILE=1 MOAT_BIN=../target/release/moat npx playwright test -c playwright.bench.config.ts
// (MOAT_BENCH_JOBS jobs per company, 100,000 by default). It writes the profile to
// MOAT_PROFILE_OUT (default ../target/worker.cpuprofile; DevTools' Performance panel opens it) and
// prints the functions that took the most time, by self and by total time. For function names in
// the wasm, build the core without wasm-opt (it strips them): `wasm-bindgen --keep-debug` on the
// `wasm` profile's output, then `npm run build`.
import { chromium, test } from "@playwright/test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer, stopServer } from "../tests/fixtures";

interface Node { id: number; callFrame: { functionName: string; url: string }; children?: number[] }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[] }

function summary(p: Profile, top = 25): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (n: Node) => n.callFrame.functionName || `(${n.callFrame.url.split("/").pop() || "anonymous"})`;
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  p.samples.forEach((s, i) => {
    const dt = p.timeDeltas[i]! / 1000;
    const leaf = byId.get(s)!;
    self.set(name(leaf), (self.get(name(leaf)) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = s; id !== undefined; id = parent.get(id)) {
      const f = name(byId.get(id)!);
      if (!seen.has(f)) total.set(f, (total.get(f) ?? 0) + dt);
      seen.add(f);
    }
  });
  const list = (m: Map<string, number>) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([f, ms]) => `${ms.toFixed(0).padStart(7)} ms  ${f.slice(0, 110)}`);
  return ["self:", ...list(self), "total:", ...list(total)].join("\n");
}

test("a CPU profile of the worker during a first sign-in", async () => {
  const use = test.info().project.use;
  const server = await startServer(undefined, undefined, ["--demo-jobs", process.env.MOAT_BENCH_JOBS ?? "100000"]);
  const dir = mkdtempSync(join(tmpdir(), "moat-profile-"));
  try {
    const context = await chromium.launchPersistentContext(dir, { ...use.launchOptions, headless: true, viewport: use.viewport });
    const page = context.pages()[0] ?? (await context.newPage());
    const cdp = await context.newCDPSession(page);
    // The worker starts paused (waitForDebuggerOnStart); its profiler starts before it runs.
    let worker = "";
    let next = 1;
    const answers = new Map<number, (v: { profile?: Profile }) => void>();
    const send = (method: string, params = {}) =>
      new Promise<{ profile?: Profile }>((ok) => {
        const id = next++;
        answers.set(id, ok);
        void cdp.send("Target.sendMessageToTarget", { sessionId: worker, message: JSON.stringify({ id, method, params }) });
      });
    cdp.on("Target.receivedMessageFromTarget", (e) => {
      const m = JSON.parse(e.message) as { id?: number; result?: { profile?: Profile } };
      if (m.id) answers.get(m.id)?.(m.result ?? {});
    });
    const started = new Promise<void>((ok) =>
      cdp.on("Target.attachedToTarget", (e) => {
        if (e.targetInfo.type !== "worker" || worker) return;
        worker = e.sessionId;
        void send("Profiler.enable")
          .then(() => send("Profiler.setSamplingInterval", { interval: 200 }))
          .then(() => send("Profiler.start"))
          .then(() => send("Runtime.runIfWaitingForDebugger"))
          .then(() => ok());
      }),
    );
    await cdp.send("Target.setAutoAttach", { autoAttach: true, waitForDebuggerOnStart: true, flatten: false });
    await page.goto(server.url + "/");
    const t0 = Date.now();
    await page.getByTestId("signin-alice").click();
    await started;
    await page.getByTestId("status").and(page.locator('[data-phase="live"]')).waitFor({ timeout: 600_000 });
    console.log(`sign-in → live: ${Date.now() - t0} ms (profiling slows it)`);
    const { profile } = await send("Profiler.stop");
    const out = process.env.MOAT_PROFILE_OUT ?? "../target/worker.cpuprofile";
    writeFileSync(out, JSON.stringify(profile));
    console.log(`profile: ${out}\n${summary(profile!)}`);
    await context.close();
  } finally {
    await stopServer(server);
    rmSync(dir, { recursive: true, force: true });
  }
});
