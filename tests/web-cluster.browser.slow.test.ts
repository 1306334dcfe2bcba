/**
 * The web client test (tests/web.browser.test.ts) once more, whole, with the
 * runtime on a 3-master cluster (WEB_TEST_CLUSTER=1, tests/helpers/browser.ts):
 * feeds, live "Refresh (N)" over SSE, interests, runs, dashboard and run
 * inspector against cluster mode. (Set before the import: the stack reads it
 * when the suite starts.)
 */
import { afterAll } from "vitest";

process.env.WEB_TEST_CLUSTER = "1";
// The forks run several files (isolate: false): the files after this one run on one server again.
afterAll(() => {
  delete process.env.WEB_TEST_CLUSTER;
});
await import("./web.browser.test");
