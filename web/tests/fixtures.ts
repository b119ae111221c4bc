// Test fixtures: a real `moat serve --demo` per test (fresh SQLite file, port 0), and helpers to sign in.
import { test as base, expect, type Page } from "@playwright/test";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, "../..");

export interface Server {
  /** `http://127.0.0.1:PORT` */
  url: string;
  dir: string;
  process: ChildProcess;
}

export async function startServer(
  dir = mkdtempSync(join(tmpdir(), "moat-web-")),
  listen = "127.0.0.1:0",
  extra: string[] = [],
): Promise<Server> {
  const bin = process.env.MOAT_BIN ?? join(root, "target/debug/moat");
  const child = spawn(
    bin,
    [
      "serve", "--demo", "--listen", listen, "--data", join(dir, "data"), "--web-root", join(root, "web/dist"),
      "--migrations", join(root, "schemas/migrations"), ...extra,
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" } },
  );
  const url = await new Promise<string>((ok, fail) => {
    let out = "";
    const timer = setTimeout(() => fail(new Error(`moat did not start:\n${out}`)), extra.length ? 600_000 : 60_000);
    child.stdout!.on("data", (b: Buffer) => {
      out += b.toString();
      const m = /serving on (http:\/\/[0-9.:]+)\//.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    child.stderr!.on("data", (b: Buffer) => (out += b.toString()));
    child.on("exit", (code) => fail(new Error(`moat exited with ${code}:\n${out}`)));
  });
  return { url, dir, process: child };
}

export async function stopServer(s: Server, keep = false): Promise<void> {
  if (s.process.exitCode === null) {
    s.process.kill("SIGTERM");
    await new Promise((r) => s.process.once("exit", r));
  }
  if (!keep) rmSync(s.dir, { recursive: true, force: true });
}

/** Runs `moat migrate up --server`: the demo's migrations, applied inside the running server. */
export function migrateLive(s: Server): string {
  const bin = process.env.MOAT_BIN ?? join(root, "target/debug/moat");
  return execFileSync(bin, ["migrate", "--data", join(s.dir, "data"), "up", "--server", s.url, "--demo"]).toString();
}

/** Stops the server, runs `moat migrate up` with the demo's migrations on its database, and starts it
 * again on the same address: what an operator does. The server object is updated in place. */
export async function migrateServer(s: Server): Promise<string> {
  await stopServer(s, true);
  const bin = process.env.MOAT_BIN ?? join(root, "target/debug/moat");
  const out = execFileSync(bin, ["migrate", "--data", join(s.dir, "data"), "--dir", join(root, "schemas/migrations"), "up"]);
  const again = await startServer(s.dir, s.url.replace("http://", ""));
  s.process = again.process;
  return out.toString();
}

export const test = base.extend<{ server: Server }>({
  server: async ({}, use) => {
    const s = await startServer();
    await use(s);
    await stopServer(s);
  },
});

export { expect };

/** Signs in as a demo user and waits for the first list to show, live. */
export async function signIn(page: Page, server: Server, user: string): Promise<void> {
  await page.goto(server.url + "/");
  await page.getByTestId(`signin-${user}`).click();
  await expect(page.getByTestId("status")).toHaveAttribute("data-phase", "live", { timeout: 60_000 });
  await expect(page.getByTestId("list")).toBeVisible();
}

/** Where the screenshots for review go (the README names it). */
export const shots = join(root, "target/web-report");

/** Runs a read-only query on company-a's database file (python3's sqlite3; WAL readers do not block). */
export function serverQuery(s: Server, sql: string, ...params: string[]): unknown[][] {
  const script =
    "import json,sqlite3,sys\n" +
    "c=sqlite3.connect('file:'+sys.argv[1]+'?mode=ro',uri=True)\n" +
    "print(json.dumps(c.execute(sys.argv[2],sys.argv[3:]).fetchall()))";
  const out = execFileSync("python3", ["-c", script, join(s.dir, "data", "tenants", "company-a.db"), sql, ...params]);
  return JSON.parse(out.toString()) as unknown[][];
}

/** Opens a record's page by its URL (the list's row ids are the record ids). */
export async function openRecord(page: Page, server: Server, objectType: string, id: string): Promise<void> {
  await page.goto(`${server.url}/#/o/${objectType}/${id}`);
  await expect(page.getByTestId("detail-title")).toBeVisible();
}

/** The ids of the first `n` rows of the open list. */
export async function firstRowIds(page: Page, n: number): Promise<string[]> {
  const ids = await page.getByTestId("list").locator("tbody tr").evaluateAll((rows) =>
    rows.map((r) => (r.getAttribute("data-testid") ?? "").replace(/^row-/, "")),
  );
  return ids.slice(0, n);
}

/** Sets the scale of the jobs' price field (company-a's metadata), as an admin's client writes it. */
export async function setPriceScale(page: Page, server: Server, scale: number): Promise<void> {
  const [[text]] = serverQuery(server, "SELECT fields FROM object_metadata WHERE id = 'company-a:jobs'") as [[string]];
  const fields = (JSON.parse(text) as { name: string; scale?: number }[]).map((f) =>
    f.name === "price_cents" ? { ...f, scale } : f,
  );
  await page.evaluate(
    (v) => window.moat!.updateRow("object_metadata", "company-a:jobs", "fields", { type: "text", value: v }),
    JSON.stringify(fields),
  );
}

const axePath = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

interface AxeResult {
  violations: { id: string; impact: string | null; help: string; nodes: { target: unknown[] }[] }[];
}

/** The serious and critical violations axe-core finds on the page as it is now. */
export async function axe(page: Page): Promise<string[]> {
  if (!(await page.evaluate(() => "axe" in window))) await page.addScriptTag({ path: axePath });
  const result = await page.evaluate(
    () => (window as unknown as { axe: { run: (o: unknown) => Promise<AxeResult> } }).axe.run({ resultTypes: ["violations"] }),
  );
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map((n) => JSON.stringify(n.target)).join(", ")}`);
}
