/**
 * The reduced fuzz of `npm run fuzz` inside the suite: seeded cases per route
 * of the news app against the Node runtime (50 per route, API_TOKEN set, a
 * server of its own, plus the raw socket probes) and against the deploy
 * bundle in workerd (10 per route, plus 3 MB uploads the app answers before
 * reading them). Never a 5xx, every 4xx JSON, no hang, no reset, no crash, no
 * key outside the namespace (a hang: no answer within 60 s, as the machine is
 * shared; `npm run fuzz` allows 20 s). The long run (500+ cases per route, both
 * runtimes, RSS under 400 MB posts) is `npm run fuzz`.
 */
import { describe, expect, it } from "vitest";
import { fuzzEndpoints, runFuzz, type FuzzReport } from "../worker-host/news/tools/fuzz";

function expectClean(report: FuzzReport, cases: number): void {
  expect(report.endpoints.length).toBe(fuzzEndpoints().length);
  expect(report.endpoints.length).toBeGreaterThan(15);
  for (const e of report.endpoints) {
    expect(e.cases, e.endpoint).toBe(cases);
    expect({ endpoint: e.endpoint, serverErrors: e.serverErrors, nonJson4xx: e.nonJson4xx, hangs: e.hangs, resets: e.resets }, e.examples.join("\n")).toEqual({ endpoint: e.endpoint, serverErrors: 0, nonJson4xx: 0, hangs: 0, resets: 0 });
  }
  // The cases reach past validation too: some are accepted, many refused.
  const statuses = report.endpoints.flatMap((e) => Object.keys(e.statuses).map(Number));
  expect(statuses.some((s) => s >= 200 && s < 300)).toBe(true);
  expect(statuses.filter((s) => s >= 400).length).toBeGreaterThan(10);
  expect(report.crashes).toBe(0);
  expect(report.keysOutside).toEqual([]);
  expect(report.rawBad).toEqual([]);
  // Each route's body limit, measured: a body of the limit passes the check, one byte more is 413.
  const limited = (report.limits ?? []).filter((l) => l.limit !== null);
  expect(limited.length).toBeGreaterThan(8);
  for (const l of limited) expect({ endpoint: l.endpoint, atLimitTooLarge: l.atLimit === 413, overLimit: l.overLimit }).toEqual({ endpoint: l.endpoint, atLimitTooLarge: false, overLimit: 413 });
}

describe("fuzz (reduced)", () => {
  it("node: 50 seeded hostile cases per route: no 5xx, JSON 4xx, no hang, no key outside the namespace", async () => {
    const { reports } = await runFuzz({ seed: 20261202, cases: 50, runtimes: ["node"], answerWithinMs: 60_000, log: () => {} });
    const [node] = reports;
    expectClean(node, 50);
    console.log(`[fuzz] node: ${node.totalCases} cases over ${node.endpoints.length} routes, 0 5xx, ${node.rawProbes} raw socket probes`);
  }, 300_000);

  it("workerd: 10 seeded hostile cases per route, and 3 MB uploads answered before they are read all get their answer", async () => {
    const { reports } = await runFuzz({ seed: 20261202, cases: 10, runtimes: ["workerd"], answerWithinMs: 60_000, log: () => {} });
    const [workerd] = reports;
    expectClean(workerd, 10);
    // 5 kinds of early answer (413 on the declared length and on a chunked body, 401 unsigned, 404 no stage) x 6: none cut off by a reset.
    expect(workerd.rawProbes).toBe(30);
    console.log(`[fuzz] workerd: ${workerd.totalCases} cases over ${workerd.endpoints.length} routes, 0 5xx, ${workerd.rawProbes} early-answer uploads all answered, ${workerd.platform431} heads refused by workerd itself`);
  }, 300_000);
});
