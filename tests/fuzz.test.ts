/**
 * The reduced fuzz of `npm run fuzz` inside the suite: seeded cases per route
 * of the news app against the Node runtime (50 per route, API_TOKEN set, a
 * server of its own, plus the raw socket probes); tests/fuzz-workerd.test.ts
 * does the same against the deploy bundle in workerd (a file of its own, so
 * the two run side by side). Never a 5xx, every 4xx JSON, no hang, no reset, no crash, no
 * key outside the namespace (a hang: no answer within 60 s, as the machine is
 * shared; `npm run fuzz` allows 20 s). The long run (500+ cases per route, both
 * runtimes, RSS under 400 MB posts) is `npm run fuzz`.
 */
import { describe, it } from "vitest";
import { runFuzz } from "../worker-host/news/tools/fuzz";
import { expectClean } from "./helpers/fuzz-expect";

describe("fuzz (reduced)", () => {
  it("node: 50 seeded hostile cases per route: no 5xx, JSON 4xx, no hang, no key outside the namespace", async () => {
    const { reports } = await runFuzz({ seed: 20261202, cases: 50, runtimes: ["node"], answerWithinMs: 60_000, log: () => {} });
    const [node] = reports;
    expectClean(node, 50);
    console.log(`[fuzz] node: ${node.totalCases} cases over ${node.endpoints.length} routes, 0 5xx, ${node.rawProbes} raw socket probes`);
  }, 300_000);
});
