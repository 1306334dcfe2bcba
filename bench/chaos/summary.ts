/** The chaos summary: one row per fault kind (plus poison and the total), over every run. */
import type { FaultRecord, RunResult } from "./harness";

function pct(values: number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const secs = (ms: number | undefined) => (ms === undefined ? "-" : `${(ms / 1000).toFixed(1)} s`);

/** A run broke a guarantee. */
export function runFailed(r: RunResult): boolean {
  return r.report.violations.length > 0 || r.ctrlCMs.some((ms) => ms > 5000);
}

export function summarize(results: RunResult[]): { table: string; failed: boolean } {
  const kinds = new Map<string, { runs: Set<RunResult>; faults: FaultRecord[] }>();
  for (const r of results) {
    // Results written before crashes carried their own count: the run's, on its first cut.
    if (r.report.everysecLost > 0 && !r.faults.some((f) => f.everysecLost !== undefined)) {
      const cut = r.faults.find((f) => (f.cutBytes ?? 0) > 0);
      if (cut) cut.everysecLost = r.report.everysecLost;
    }
    for (const f of r.faults) {
      const k = kinds.get(f.kind) ?? { runs: new Set(), faults: [] };
      k.runs.add(r);
      k.faults.push(f);
      kinds.set(f.kind, k);
    }
  }
  const header = ["fault kind", "runs", "injected", "lost", "duplicated", "dead-lettered", "stalled hosts", "everysec lost", "recovery p50", "recovery max", "all hosts max"];
  const rows: string[][] = [];
  const sum = (runs: Iterable<RunResult>, f: (r: RunResult) => number) => [...runs].reduce((a, r) => a + f(r), 0);
  for (const [kind, { runs, faults }] of [...kinds].sort(([a], [b]) => a.localeCompare(b))) {
    const rec = faults.map((f) => f.recoveryMs).filter((v): v is number => v !== undefined);
    const all = faults.map((f) => f.allHostsMs).filter((v): v is number => v !== undefined);
    const never = faults.filter((f) => f.recoveryMs === undefined).length;
    rows.push([
      kind,
      String(runs.size),
      String(faults.length),
      String(sum(runs, (r) => r.report.lost)),
      String(sum(runs, (r) => r.report.duplicated)),
      String(sum(runs, (r) => r.report.deadLettered)),
      String(faults.reduce((a, f) => a + f.stalled.length, 0)),
      String(faults.reduce((a, f) => a + (f.everysecLost ?? 0), 0)),
      secs(pct(rec, 50)),
      never > 0 ? `NEVER x${never}` : secs(pct(rec, 100)),
      all.length < faults.length ? `stalled x${faults.length - all.length}` : secs(pct(all, 100)),
    ]);
  }
  const poisonInjected = sum(results, (r) => r.report.poison.injected + r.report.poison.malformedInjected);
  const poisonOk = sum(results, (r) => r.report.poison.deadLetteredWithReason + r.report.poison.malformedDeadLettered);
  rows.push(["poison (articles + malformed entries)", String(results.length), String(poisonInjected), "-", "-", `${poisonOk} with reason`, "-", "-", "-", "-", "-"]);
  const delays = results.map((r) => r.report.maxDelayMs);
  rows.push([
    "all runs",
    String(results.length),
    String(sum(results, (r) => r.faults.length)),
    String(sum(results, (r) => r.report.lost)),
    String(sum(results, (r) => r.report.duplicated)),
    String(sum(results, (r) => r.report.deadLettered)),
    String(sum(results, (r) => r.faults.reduce((a, f) => a + f.stalled.length, 0))),
    `${sum(results, (r) => r.report.everysecLost)} (in ${results.filter((r) => r.report.everysecLost > 0).length} runs)`,
    "-",
    "-",
    "-",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  const failedRuns = results.filter(runFailed);
  const ctrlC = results.flatMap((r) => r.ctrlCMs);
  const first = results[0];
  // The header names what the runs share, or every value they had ("1/2 host(s)").
  const distinct = (pick: (r: RunResult) => string | number) => [...new Set(results.map(pick))].join("/");
  const table = [
    `chaos summary: ${results.length} run(s), seeds ${results.map((r) => r.seed).join(",")}, ${first ? `${distinct((r) => r.hosts)} host(s), appendfsync ${distinct((r) => r.fsync)}, ${distinct((r) => r.server)}` : ""}`,
    line(header),
    `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`,
    ...rows.map(line),
    `runs: ${sum(results, (r) => r.report.runs)} accepted, ${sum(results, (r) => r.report.completed)} completed, ${sum(results, (r) => r.report.feedEntries)} feed entries checked; ` +
      `max delay past the fault that delayed a run ${secs(Math.max(0, ...delays))} (bound 30 s), runs past it ${sum(results, (r) => r.report.delayed)}; ` +
      `Ctrl-C under load: ${ctrlC.length} exits, max ${ctrlC.length ? secs(Math.max(...ctrlC)) : "-"}`,
    failedRuns.length > 0 ? `FAILED: seeds ${failedRuns.map((r) => r.seed).join(", ")}` : "every run passed the oracle",
  ].join("\n");
  return { table, failed: failedRuns.length > 0 };
}
