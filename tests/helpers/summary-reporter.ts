/**
 * Prints one plain closing line, `tests: N passed, N failed, N skipped`, after
 * vitest's own summary, so CI logs state the count in a runner-neutral form,
 * and the slowest files before it (`slowest: 12.3 s tests/x.test.ts (import
 * 1.2 s, cpu 3.4 s + children 5.6 s)`), so a file that makes `npm test` long is
 * named in every run; every file's times go to tests/artifacts/test-times.json
 * (tests/artifacts/test-times-slow.json for a run of the slow project alone).
 * The CPU figures come from tests/helpers/file-cpu.ts: on two cores the suite
 * is CPU-bound, so a file's CPU matters more than its wall time.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import type { Reporter, TestModule } from "vitest/node";

const SHOWN = 10;

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    const times: Array<{ file: string; seconds: number; importSeconds: number; cpuSeconds?: number; childCpuSeconds?: number; pid?: number; startMs?: number; endMs?: number; tests: number }> = [];
    for (const mod of testModules) {
      let tests = 0;
      for (const test of mod.children.allTests()) {
        tests++;
        const state = test.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
        else skipped++;
      }
      if (mod.state() === "failed" && tests === 0) failed++;
      const d = mod.diagnostic();
      const cpu = mod.meta().cpu;
      times.push({ file: relative(process.cwd(), mod.moduleId), seconds: (d.duration + d.collectDuration) / 1000, importSeconds: d.collectDuration / 1000, cpuSeconds: cpu?.own, childCpuSeconds: cpu?.children, pid: cpu?.pid, startMs: cpu?.startMs, endMs: cpu?.endMs, tests });
    }
    times.sort((a, b) => b.seconds - a.seconds);
    if (times.length > 0) {
      const total = times.reduce((s, t) => s + t.seconds, 0);
      const cpu = times.reduce((s, t) => s + (t.cpuSeconds ?? 0) + (t.childCpuSeconds ?? 0), 0);
      process.stdout.write(`\nslowest files (import + hooks + tests; all ${times.length} files: ${total.toFixed(0)} s over the workers, ${cpu.toFixed(0)} s of CPU in hooks, tests and their child processes):\n`);
      const cpuOf = (t: (typeof times)[number]) => (t.cpuSeconds === undefined ? "" : `, cpu ${t.cpuSeconds.toFixed(1)} s + children ${(t.childCpuSeconds ?? 0).toFixed(1)} s`);
      for (const t of times.slice(0, SHOWN)) process.stdout.write(`  ${t.seconds.toFixed(1).padStart(6)} s  ${t.file} (import ${t.importSeconds.toFixed(1)} s${cpuOf(t)})\n`);
    }
    if (times.length > 1) try {
      const dir = join(process.cwd(), "tests", "artifacts");
      mkdirSync(dir, { recursive: true });
      const slowOnly = testModules.every((m) => m.project.name === "slow");
      writeFileSync(join(dir, slowOnly ? "test-times-slow.json" : "test-times.json"), `${JSON.stringify(times, null, 1)}\n`);
    } catch {
      // a read-only checkout: the list above is enough
    }
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
