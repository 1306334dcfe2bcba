import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    // Builds web/dist once for the browser and serving tests.
    globalSetup: ["tests/global-setup.ts"],
    // Each file starts its own server on a free port; two cores, so two forks.
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default", "./tests/helpers/summary-reporter.ts"],
  },
});
