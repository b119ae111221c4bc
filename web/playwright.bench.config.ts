import { defineConfig } from "@playwright/test";
import base from "./playwright.config";

// The web benchmarks (`scripts/bench`): they print figures and never fail on a timing.
export default defineConfig({
  ...base,
  testDir: "bench",
  testMatch: "*.bench.ts",
  timeout: 30 * 60_000,
});
