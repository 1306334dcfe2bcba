import { defineConfig } from "vitest/config";
import LongestFirst from "./tests/helpers/sequencer";

/**
 * Two projects over tests/: `suite` is `npm test` (every *.test.ts, kept near two
 * minutes), `slow` is `npm run test:slow` (the *.slow.test.ts files: whole runs too
 * heavy for the suite, each with a reduced version in it). CI runs both.
 * `npx vitest run tests/x.test.ts` (or x.slow.test.ts) runs that file either way.
 */
export default defineConfig({
  test: {
    // Builds web/dist once for the browser and serving tests.
    globalSetup: ["tests/global-setup.ts"],
    // Measures each file's CPU for the summary (tests/helpers/file-cpu.ts).
    setupFiles: ["tests/helpers/file-cpu.ts"],
    // Each file starts its own server on a free port. Four forks on two cores: the files often
    // wait (servers starting, child processes, timers). On a quiet two-core machine, with the
    // suite at about 160 s of CPU: three forks took 126 s, four 107 s, five 112 s (more CPU).
    pool: "forks",
    maxWorkers: 4,
    // Files run one after another in the same four processes instead of a new process
    // each: the framework, vitest and the packages are imported once per fork, not once
    // per file (on a quiet two-core machine: 199 s -> 152 s for the same suite). No test
    // file may leave a process-wide change behind (env, handlers, globals, timers); helpers
    // may keep what costs to start for the files after (tests/helpers/browser.ts: one
    // Chromium per fork, a fresh browser context per file).
    isolate: false,
    // Longest files first, by tests/file-seconds.json (npm run test:order refreshes it): the
    // same order in a fresh clone, where vitest has no results cache to order by.
    sequence: { sequencer: LongestFirst },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default", "./tests/helpers/summary-reporter.ts"],
    projects: [
      { extends: true, test: { name: "suite", include: ["tests/**/*.test.ts"], exclude: ["tests/**/*.slow.test.ts", "**/node_modules/**"] } },
      { extends: true, test: { name: "slow", include: ["tests/**/*.slow.test.ts"] } },
    ],
  },
});
