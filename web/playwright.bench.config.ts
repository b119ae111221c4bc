import { defineConfig } from "@playwright/test";
import base from "./playwright.config";

// The web benchmarks (`scripts/bench`): they print figures and never fail on a timing.
export default defineConfig({
  ...base,
  testDir: "bench",
  // MOAT_PROFILE=1: the worker's CPU profile during a first sign-in (bench/worker-profile.ts) instead.
  testMatch: process.env.MOAT_PROFILE ? "worker-profile.ts" : "*.bench.ts",
  timeout: 30 * 60_000,
});
