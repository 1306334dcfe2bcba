/**
 * The reduced fuzz of `npm run fuzz` against the news app's deploy bundle in
 * workerd (Miniflare, the suite's shared bundle, reaching Valkey through the
 * REST bridge): 10 seeded cases per route, plus 3 MB uploads the app answers
 * before reading them. Never a 5xx, every 4xx JSON, no hang, no reset, no key
 * outside the namespace. The Node half is tests/fuzz.test.ts.
 */
import { describe, expect, it } from "vitest";
import { runFuzz } from "../worker-host/news/tools/fuzz";
import { expectClean } from "./helpers/fuzz-expect";
import { newsWorkerBundle } from "./helpers/news-bundle";

describe("fuzz (reduced), workerd", () => {
  it("workerd: 10 seeded hostile cases per route, and 3 MB uploads answered before they are read all get their answer", async () => {
    const { reports } = await runFuzz({ seed: 20261202, cases: 10, runtimes: ["workerd"], answerWithinMs: 60_000, workerBundle: await newsWorkerBundle(), log: () => {} });
    const [workerd] = reports;
    expectClean(workerd, 10);
    // 5 kinds of early answer (413 on the declared length and on a chunked body, 401 unsigned, 404 no stage) x 6: none cut off by a reset.
    expect(workerd.rawProbes).toBe(30);
    console.log(`[fuzz] workerd: ${workerd.totalCases} cases over ${workerd.endpoints.length} routes, 0 5xx, ${workerd.rawProbes} early-answer uploads all answered, ${workerd.platform431} heads refused by workerd itself`);
  }, 300_000);
});
