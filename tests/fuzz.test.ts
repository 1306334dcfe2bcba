/**
 * The reduced fuzz of `npm run fuzz` inside the suite: 50 seeded cases per
 * route of the news app against the Node runtime (API_TOKEN set, a server of
 * its own), plus the raw socket probes. Never a 5xx, every 4xx JSON, no
 * hang, no crash, no key outside the namespace. The long run (500+ cases per
 * route, Node and workerd, RSS under 400 MB posts) is `npm run fuzz`.
 */
import { describe, expect, it } from "vitest";
import { fuzzEndpoints, runFuzz } from "../worker-host/news/tools/fuzz";

describe("fuzz (reduced)", () => {
  it("50 seeded hostile cases per route: no 5xx, JSON 4xx, no hang, no key outside the namespace", async () => {
    const { reports } = await runFuzz({ seed: 20261202, cases: 50, runtimes: ["node"], log: () => {} });
    const [node] = reports;
    expect(node.endpoints.length).toBe(fuzzEndpoints().length);
    expect(node.endpoints.length).toBeGreaterThan(15);
    for (const e of node.endpoints) {
      expect(e.cases, e.endpoint).toBe(50);
      // "No answer" cases (about 1.5 % in the long run, cause not yet isolated: see docs/security.md#fuzzing) are reported, not asserted here.
      expect({ endpoint: e.endpoint, serverErrors: e.serverErrors, nonJson4xx: e.nonJson4xx }, e.examples.join("\n")).toEqual({ endpoint: e.endpoint, serverErrors: 0, nonJson4xx: 0 });
    }
    // The cases reach past validation too: some are accepted, many refused.
    const statuses = node.endpoints.flatMap((e) => Object.keys(e.statuses).map(Number));
    expect(statuses.some((s) => s >= 200 && s < 300)).toBe(true);
    expect(statuses.filter((s) => s >= 400).length).toBeGreaterThan(10);
    expect(node.crashes).toBe(0);
    expect(node.keysOutside).toEqual([]);
    expect(node.rawBad).toEqual([]);
    console.log(`[fuzz] node: ${node.totalCases} cases over ${node.endpoints.length} routes, 0 5xx, ${node.rawProbes} raw socket probes`);
  }, 300_000);
});
