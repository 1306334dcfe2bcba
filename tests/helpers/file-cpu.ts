/**
 * vitest setupFile: measures the CPU each test file costs, its own (in the
 * fork that runs it, hooks and tests, not its import) and its child
 * processes' (servers, browsers, workerd and CLIs it started and reaped), and
 * hands them to tests/helpers/summary-reporter.ts in the file's meta. On two
 * cores the suite is CPU-bound, so these name what makes `npm test` long.
 */
import { readFileSync } from "node:fs";
import { afterAll, beforeAll } from "vitest";

declare module "vitest" {
  interface TaskMeta {
    /** CPU seconds: the file's own, and its reaped child processes'. */
    cpu?: { own: number; children: number; pid: number; startMs: number; endMs: number };
  }
}

/** CPU seconds of this process's reaped children (Linux /proc; 0 elsewhere). */
function childrenCpu(): number {
  try {
    const fields = readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ");
    return (Number(fields[13]) + Number(fields[14])) / 100;
  } catch {
    return 0;
  }
}

let own = process.cpuUsage();
let children = 0;
let startMs = 0;

beforeAll(() => {
  own = process.cpuUsage();
  children = childrenCpu();
  startMs = Date.now();
});

// The first argument is the (empty) context; vitest requires it destructured.
afterAll(({}, file) => {
  const used = process.cpuUsage(own);
  file.meta.cpu = { own: (used.user + used.system) / 1e6, children: childrenCpu() - children, pid: process.pid, startMs, endMs: Date.now() };
});
