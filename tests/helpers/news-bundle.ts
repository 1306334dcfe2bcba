/**
 * The news app's Workers deploy bundle (wrangler.toml, `wrangler deploy
 * --dry-run`, as `npm run build:worker`), built once per `vitest run` and
 * shared by the files that load it in Miniflare, instead of one wrangler run
 * per file. tests/global-setup.ts provides a directory for the run; the first
 * file to ask builds into it (a mkdir lock), the others wait for it, bounded.
 * tests/worker-bundle.test.ts checks what the build made.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { inject } from "vitest";
import { buildWorkerBundle, inspectBundle, type WorkerBundle } from "../../worker-host/worker-bundle";

const WAIT_MS = 180_000;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The shared news Worker bundle of this test run (built on first use). */
export async function newsWorkerBundle(): Promise<WorkerBundle> {
  const root = join(inject("testRunDir"), "news-worker");
  const outdir = join(root, "out");
  const done = join(root, "done");
  const lock = join(root, "lock");
  mkdirSync(root, { recursive: true });
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    if (existsSync(done)) return inspectBundle(readFileSync(done, "utf8"));
    let mine = false;
    try {
      mkdirSync(lock);
      mine = true;
    } catch {
      // Another file builds it; take over only if that process is gone.
      // (no pid file yet: its owner has just taken the lock).
      let owner = 0;
      try {
        owner = Number(readFileSync(join(lock, "pid"), "utf8").trim());
      } catch {
        owner = 0;
      }
      if (owner && !processAlive(owner)) rmSync(lock, { recursive: true, force: true });
    }
    if (mine) {
      writeFileSync(join(lock, "pid"), String(process.pid));
      try {
        const bundle = await buildWorkerBundle({ outdir });
        writeFileSync(`${done}.tmp`, bundle.scriptPath);
        renameSync(`${done}.tmp`, done);
        return bundle;
      } finally {
        rmSync(lock, { recursive: true, force: true });
      }
    }
    if (Date.now() > deadline) throw new Error(`the shared news Worker bundle was not built within ${WAIT_MS / 1000} s (${root})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
