/** What tests/fuzz.test.ts and tests/fuzz-workerd.test.ts expect of a fuzz report. */
import { expect } from "vitest";
import { fuzzEndpoints, type FuzzReport } from "../../worker-host/news/tools/fuzz";

export function expectClean(report: FuzzReport, cases: number): void {
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
