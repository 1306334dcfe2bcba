/**
 * The dev stack cleans up after itself (issue 10, item 3): `npm run dev`
 * (worker-host/cli.ts dev: wrangler dev + workerd in their own process group)
 * killed with kill -9 leaves no wrangler or workerd behind, within about a
 * second; a busy PORT or REST-bridge port is a clear error naming the
 * variable, never a "listening" line.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { listenersOf } from "../worker-host/process-group";
import { freePort, isAlive } from "../worker-host/valkey-launcher";
import { nodeArgs } from "./helpers/node-entry";

const dirs: string[] = [];
const started: ChildProcess[] = [];
const tracked = new Set<number>();

afterAll(() => {
  // Only what this file started: the dev processes and the wrangler/workerd pids recorded from them.
  for (const pid of [...tracked, ...started.map((c) => c.pid ?? 0)]) {
    try {
      if (pid > 0 && isRunning(pid)) process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** ppid and state of a pid, from /proc/<pid>/stat. */
function statOf(pid: number): { ppid: number; state: string; pgid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: f[0], ppid: Number(f[1]), pgid: Number(f[2]) };
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie (a zombie holds no port and runs nothing; its reaper may be slow). */
function isRunning(pid: number): boolean {
  const s = statOf(pid);
  return s !== undefined && s.state !== "Z" && isAlive(pid);
}

/** Every running descendant of `root`, with its command line. */
function descendants(root: number): Array<{ pid: number; cmd: string }> {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const s = statOf(pid);
    if (!s || s.state === "Z") continue;
    children.set(s.ppid, [...(children.get(s.ppid) ?? []), pid]);
  }
  const out: Array<{ pid: number; cmd: string }> = [];
  const walk = (pid: number) => {
    for (const child of children.get(pid) ?? []) {
      let cmd = "";
      try {
        cmd = readFileSync(`/proc/${child}/cmdline`, "utf8").replace(/\0/g, " ");
      } catch {
        continue;
      }
      out.push({ pid: child, cmd });
      walk(child);
    }
  };
  walk(root);
  return out;
}

function startDev(env: Record<string, string>): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const dataDir = mkdtempSync(join(tmpdir(), "edgepipe-dev-"));
  dirs.push(dataDir);
  const child = spawn(process.execPath, nodeArgs("worker-host/cli.ts", ["dev", "--pipeline", "./functions/example/pipeline.ts"]), {
    env: { ...process.env, DEMO: "off", VALKEY_DATA_DIR: dataDir, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  started.push(child);
  let text = "";
  child.stdout?.on("data", (d: Buffer) => (text += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (text += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, output: () => text, exited };
}

async function waitFor(check: () => boolean, timeoutMs: number, stepMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return check();
}

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((s) => s.destroy());
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

describe.skipIf(!readdirSync("/proc").length)("npm run dev", () => {
  it("kill -9 of the dev process stops wrangler and workerd within about a second", async () => {
    const [port, bridgePort] = [await freePort(), await freePort()];
    const dev = startDev({ PORT: String(port), UPSTASH_REDIS_REST_URL: `http://127.0.0.1:${bridgePort}` });
    const up = await waitFor(() => /listening on/.test(dev.output()) || dev.child.exitCode !== null, 150_000, 200);
    expect(up && dev.child.exitCode === null, `dev did not come up:\n${dev.output()}`).toBe(true);
    const edge = descendants(dev.child.pid!).filter((p) => /wrangler|workerd/.test(p.cmd));
    for (const p of edge) tracked.add(p.pid);
    expect(edge.some((p) => /wrangler/.test(p.cmd)), JSON.stringify(edge)).toBe(true);
    expect(edge.some((p) => /workerd/.test(p.cmd)), JSON.stringify(edge)).toBe(true);
    // workerd of this session holds PORT.
    expect(listenersOf(port)?.some((l) => edge.some((p) => p.pid === l.pid))).toBe(true);

    const killedAt = performance.now();
    let devGoneMs = -1;
    void dev.exited.then(() => (devGoneMs = Math.round(performance.now() - killedAt)));
    process.kill(dev.child.pid!, "SIGKILL");
    const gone = await waitFor(() => edge.every((p) => !isRunning(p.pid)), 10_000, 20);
    const ms = Math.round(performance.now() - killedAt);
    const left = edge.filter((p) => isRunning(p.pid));
    console.log(`[dev-stack] kill -9 of npm run dev: ${edge.length} wrangler/workerd processes (${edge.map((p) => p.pid).join(", ")}) gone ${gone ? `after ${ms} ms` : `NOT within ${ms} ms: ${JSON.stringify(left)}`} (the dev process itself was reaped after ${devGoneMs} ms)`);
    expect(left).toEqual([]);
    expect(ms).toBeLessThan(2000);
    expect(listenersOf(port)).toEqual([]);
  }, 200_000);

  it("a busy PORT is an error naming PORT, never 'listening'", async () => {
    const port = await freePort();
    const holder = await listen(port);
    try {
      const dev = startDev({ PORT: String(port), UPSTASH_REDIS_REST_URL: `http://127.0.0.1:${await freePort()}` });
      const code = await dev.exited;
      expect(code).toBe(1);
      expect(dev.output()).toContain(`PORT ${port} is already in use on 127.0.0.1: stop what listens there or set PORT to a free port`);
      expect(dev.output()).not.toMatch(/listening|PORT=0 picks one/);
    } finally {
      holder.close();
    }
  }, 60_000);

  it("a busy REST-bridge port is an error naming UPSTASH_REDIS_REST_URL, and the embedded server stops", async () => {
    const bridgePort = await freePort();
    const holder = await listen(bridgePort);
    try {
      const dev = startDev({ PORT: String(await freePort()), UPSTASH_REDIS_REST_URL: `http://127.0.0.1:${bridgePort}` });
      const code = await dev.exited;
      expect(code).toBe(1);
      expect(dev.output()).toContain(`UPSTASH_REDIS_REST_URL: port ${bridgePort} on 127.0.0.1 is already in use`);
      expect(dev.output()).not.toMatch(/listening on/);
      // The embedded server it had started was stopped on the way out (the launcher removes its state file then).
      const dataDir = dirs[dirs.length - 1];
      expect(dev.output()).toMatch(/starting embedded/);
      expect(readLauncherState(dataDir)).toBe("");
      const serverPid = Number(readText(join(dataDir, "server.pid")).trim() || 0);
      if (serverPid) expect(await waitFor(() => !isRunning(serverPid), 10_000)).toBe(true);
    } finally {
      holder.close();
    }
  }, 90_000);

  it("PORT=0 is refused with what to set", async () => {
    const dev = startDev({ PORT: "0" });
    expect(await dev.exited).toBe(1);
    expect(dev.output()).toContain("npm run dev needs a fixed PORT");
  }, 60_000);
});

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

function readLauncherState(dir: string): string {
  return readText(join(dir, "launcher.json"));
}
