/**
 * vitest setupFile: measures the CPU each test file costs, its own (in the
 * fork that runs it, hooks and tests, not its import) and its child
 * processes' (servers, browsers, workerd and CLIs it started, reaped or still running), and
 * hands them to tests/helpers/summary-reporter.ts in the file's meta. On two
 * cores the suite is CPU-bound, so these name what makes `npm test` long.
 */
import { readdirSync, readFileSync } from "node:fs";
import { afterAll, beforeAll } from "vitest";

declare module "vitest" {
  interface TaskMeta {
    /** CPU seconds, the file's own and its child processes' (reaped or still running); its fork, start and end. */
    cpu?: { own: number; children: number; pid: number; startMs: number; endMs: number };
  }
}

/** The fields of /proc/<pid>/stat after the command name (index 0 is field 3, the state). */
function statFields(pid: number | "self"): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(") ") + 2).split(" ");
}

/**
 * CPU seconds of this process's child processes (Linux /proc; 0 elsewhere):
 * the reaped ones, and those still running with everything below them (a
 * process that outlives the file, such as the Chromium tests/helpers/browser.ts
 * keeps for the next file, is counted in the file that used it).
 */
function childrenCpu(): number {
  try {
    const self = statFields("self");
    let ticks = Number(self[13]) + Number(self[14]);
    const kids = new Map<number, number[]>();
    const cpu = new Map<number, number>();
    for (const name of readdirSync("/proc")) {
      const pid = Number(name);
      if (!Number.isInteger(pid)) continue;
      try {
        const f = statFields(pid);
        const ppid = Number(f[1]);
        kids.set(ppid, [...(kids.get(ppid) ?? []), pid]);
        // utime, stime, and its reaped children's cutime, cstime.
        cpu.set(pid, Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]));
      } catch {
        // it ended meanwhile
      }
    }
    const todo = [...(kids.get(process.pid) ?? [])];
    for (let pid = todo.pop(); pid !== undefined; pid = todo.pop()) {
      ticks += cpu.get(pid) ?? 0;
      todo.push(...(kids.get(pid) ?? []));
    }
    return ticks / 100;
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
