/**
 * Embedded Valkey launcher: finds a server binary (VALKEY_SERVER, else
 * valkey-server, else redis-server >= 7.0), starts it on loopback with its own
 * data dir, waits for PING, and stops it with the parent. A pidfile in the data
 * dir lets the next start find a server orphaned by a `kill -9` of its parent
 * and stop it before starting a fresh one.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, accessSync, constants } from "node:fs";
import { createServer, connect } from "node:net";
import { delimiter, join, resolve } from "node:path";

export interface ServerBinary {
  path: string;
  /** "valkey" or "redis" */
  flavor: "valkey" | "redis";
  version: string;
}

export class ValkeyBinaryNotFound extends Error {
  constructor(detail: string) {
    super(
      `${detail}\n` +
        "Install a Valkey-protocol server, or point the app at a running one:\n" +
        "  Debian/Ubuntu: sudo apt-get install redis-server   (or valkey-server where packaged)\n" +
        "  macOS:         brew install valkey\n" +
        "  any:           VALKEY_SERVER=/path/to/valkey-server   or   VALKEY_URL=redis://host:port",
    );
    this.name = "ValkeyBinaryNotFound";
  }
}

function which(name: string, path = process.env.PATH ?? ""): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

const probed = new Map<string, { mtimeMs: number; binary: ServerBinary }>();

/**
 * Reads `--version` of a server binary: "Valkey server v=8.0.1 ..." or "Redis server v=7.0.15 ...".
 * Remembered per path while the file is unchanged: a process that starts many servers runs it once.
 */
export function probeBinary(path: string): ServerBinary {
  let mtimeMs = -1;
  try {
    mtimeMs = statSync(path).mtimeMs;
  } catch {
    // spawnSync below says what is wrong
  }
  const known = probed.get(path);
  if (known && known.mtimeMs === mtimeMs) return known.binary;
  const binary = probeVersion(path);
  probed.set(path, { mtimeMs, binary });
  return binary;
}

function probeVersion(path: string): ServerBinary {
  const res = spawnSync(path, ["--version"], { encoding: "utf8", timeout: 10_000 });
  if (res.error || res.status !== 0) {
    throw new ValkeyBinaryNotFound(`could not run ${path} --version: ${res.error?.message ?? res.stderr}`);
  }
  const m = /^(\w+) server v=(\d+\.\d+\.\d+)/i.exec(res.stdout.trim());
  if (!m) throw new ValkeyBinaryNotFound(`${path} --version printed something unexpected: ${res.stdout.trim()}`);
  const flavor = m[1].toLowerCase() === "valkey" ? "valkey" : "redis";
  const [major] = m[2].split(".").map(Number);
  if (flavor === "redis" && major < 7) {
    throw new ValkeyBinaryNotFound(`${path} is Redis ${m[2]}; this project needs Redis >= 7.0 or Valkey.`);
  }
  return { path, flavor, version: m[2] };
}

/** VALKEY_SERVER, else valkey-server on PATH, else redis-server on PATH. */
export function findServerBinary(env: NodeJS.ProcessEnv = process.env): ServerBinary {
  const named = env.VALKEY_SERVER;
  if (named) {
    if (!existsSync(named)) throw new ValkeyBinaryNotFound(`VALKEY_SERVER=${named} does not exist.`);
    return probeBinary(named);
  }
  const found = which("valkey-server", env.PATH) ?? which("redis-server", env.PATH);
  if (!found) throw new ValkeyBinaryNotFound("No valkey-server or redis-server found on PATH.");
  return probeBinary(found);
}

/** The first port the kernel hands to outgoing connections (Linux's setting; elsewhere its default). */
function ephemeralLow(): number {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    if (low) return low;
  } catch {
    // not Linux
  }
  return 32768;
}

/** Binds 127.0.0.1:`port` (0: any) and closes; resolves the port bound, or 0 when it is taken. */
function tryPort(port: number): Promise<number> {
  return new Promise((resolvePort) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", () => resolvePort(0));
    srv.listen({ port, host: "127.0.0.1", exclusive: true }, () => {
      const addr = srv.address();
      const bound = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolvePort(bound));
    });
  });
}

/**
 * A free TCP port on 127.0.0.1, chosen below the ephemeral range: the source
 * port of an outgoing connection is never one of these, so a server that
 * stops and starts again on its port (a cluster node, which keeps its ports
 * across restarts) does not find it taken by some client socket meanwhile.
 * Falls back to any port the kernel picks when that range is too small or full.
 */
export async function freePort(): Promise<number> {
  const low = ephemeralLow();
  const floor = Math.max(10_000, low - 16_384);
  if (low - floor >= 1000) {
    for (let attempt = 0; attempt < 20; attempt++) {
      const port = await tryPort(floor + Math.floor(Math.random() * (low - floor)));
      if (port) return port;
    }
  }
  const port = await tryPort(0);
  if (!port) throw new Error("no free TCP port on 127.0.0.1");
  return port;
}

/** Sends PING over a raw socket; resolves true on +PONG. */
export function ping(port: number, host = "127.0.0.1", timeoutMs = 500): Promise<boolean> {
  return new Promise((done) => {
    const sock = connect({ port, host });
    const finish = (ok: boolean) => {
      sock.destroy();
      done(ok);
    };
    sock.setTimeout(timeoutMs, () => finish(false));
    sock.on("error", () => finish(false));
    sock.on("connect", () => sock.write("PING\r\n"));
    sock.on("data", (d) => finish(d.toString().startsWith("+PONG")));
  });
}

/** True while a process with this pid exists (signal 0 probe). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Guards against a recycled pid: the process must be the server binary we started (servers rewrite their title to "<argv0> <addr>"). */
function looksLikeServer(pid: number, binaryPath?: string): boolean {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0];
    return /valkey-server|redis-server/.test(cmd) || (binaryPath !== undefined && (cmd === binaryPath || cmd.startsWith(`${binaryPath} `)));
  } catch {
    // no /proc (macOS): trust the pidfile
    return true;
  }
}

/** Polls `check` every `stepMs` until it is true or `timeoutMs` has passed; resolves whether it became true. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, stepMs = 25): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return false;
}

/**
 * A detached `sh` loop that SIGTERMs the server once `parentPid` is gone, so a
 * kill -9 of the parent leaves no server behind (the pidfile check on the next
 * start is the second line of defence, e.g. when the whole group is killed).
 */
function startParentWatchdog(parentPid: number, serverPid: number): ChildProcess | undefined {
  try {
    const script = `while kill -0 ${parentPid} 2>/dev/null; do sleep 1; done; kill -TERM ${serverPid} 2>/dev/null`;
    const watchdog = spawn("/bin/sh", ["-c", script], { stdio: "ignore", detached: true });
    watchdog.on("error", () => {});
    watchdog.unref();
    return watchdog;
  } catch {
    return undefined;
  }
}

// Servers this process started and has not stopped: SIGTERMed by one exit
// handler (one listener however many servers, e.g. the nodes of a cluster).
const liveChildren = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of liveChildren) {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
  }
});

export interface LaunchOptions {
  /** Data dir (AOF, pidfile, log). Default `.data/valkey`. */
  dataDir?: string;
  /** Port; 0 or unset picks a free one. */
  port?: number;
  /** AOF persistence (default true; tests turn it off). */
  appendOnly?: boolean;
  binary?: ServerBinary;
  /** Extra server arguments, e.g. ["--maxmemory", "1gb"]. */
  extraArgs?: string[];
  /**
   * Start a tiny `sh` watchdog that stops the server if this process dies
   * without running its exit handlers (kill -9). Default true.
   */
  watchParent?: boolean;
  log?: (line: string) => void;
}

export interface RunningValkey {
  url: string;
  port: number;
  pid: number;
  binary: ServerBinary;
  dataDir: string;
  /** SIGTERM (the server fsyncs its AOF), wait for exit, remove the pidfile. */
  stop(): Promise<void>;
}

interface LauncherState {
  serverPid: number;
  binaryPath?: string;
  parentPid: number;
  port: number;
}

/** Stops a server left behind by a parent that died (kill -9), found by the launcher pidfile. */
export async function stopStaleServer(dataDir: string, log: (l: string) => void = () => {}): Promise<void> {
  const stateFile = join(dataDir, "launcher.json");
  if (!existsSync(stateFile)) return;
  let state: LauncherState;
  try {
    state = JSON.parse(readFileSync(stateFile, "utf8")) as LauncherState;
  } catch {
    rmSync(stateFile, { force: true });
    return;
  }
  if (state.parentPid !== process.pid && isAlive(state.parentPid) && isAlive(state.serverPid)) {
    throw new Error(
      `data dir ${dataDir} is in use by a server (pid ${state.serverPid}) owned by live process ${state.parentPid}; ` +
        "stop it or use another data dir",
    );
  }
  if (isAlive(state.serverPid) && looksLikeServer(state.serverPid, state.binaryPath)) {
    log(`stopping stale server pid ${state.serverPid} (its parent ${state.parentPid} is gone)`);
    process.kill(state.serverPid, "SIGTERM");
    const gone = await waitFor(() => !isAlive(state.serverPid), 10_000);
    if (!gone) process.kill(state.serverPid, "SIGKILL");
  }
  rmSync(stateFile, { force: true });
}

/**
 * Starts an embedded server and resolves once it answers PING.
 * @example
 * const v = await launchValkey({ dataDir: ".data/valkey" });
 * console.log(v.url); // redis://127.0.0.1:40123
 * await v.stop();
 */
export async function launchValkey({
  dataDir = ".data/valkey",
  port = 0,
  appendOnly = true,
  binary,
  extraArgs = [],
  watchParent = true,
  log = () => {},
}: LaunchOptions = {}): Promise<RunningValkey> {
  const bin = binary ?? findServerBinary();
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true });
  await stopStaleServer(dir, log);

  let lastError = "";
  for (let attempt = 0; attempt < 5; attempt++) {
    const chosen = port || (await freePort());
    const args = [
      "--port", String(chosen),
      "--bind", "127.0.0.1",
      "--protected-mode", "yes",
      "--dir", dir,
      "--daemonize", "no",
      "--save", "",
      "--appendonly", appendOnly ? "yes" : "no",
      "--appendfsync", "everysec",
      "--pidfile", join(dir, "server.pid"),
      "--logfile", join(dir, "server.log"),
      ...extraArgs,
    ];
    // Own process group: a terminal's Ctrl-C reaches only us, so we can commit
    // in-flight work before stopping the server ourselves.
    const child: ChildProcess = spawn(bin.path, args, { stdio: "ignore", detached: true });
    let exited = false;
    child.on("exit", () => (exited = true));
    const up = await waitFor(async () => exited || (await ping(chosen)), 10_000);
    if (up && !exited && child.pid) {
      const state: LauncherState = { serverPid: child.pid, binaryPath: bin.path, parentPid: process.pid, port: chosen };
      writeFileSync(join(dir, "launcher.json"), JSON.stringify(state));
      liveChildren.add(child);
      const watchdog = watchParent ? startParentWatchdog(process.pid, child.pid) : undefined;
      return {
        url: `redis://127.0.0.1:${chosen}`,
        port: chosen,
        pid: child.pid,
        binary: bin,
        dataDir: dir,
        async stop() {
          liveChildren.delete(child);
          watchdog?.kill("SIGKILL");
          if (!exited) {
            child.kill("SIGTERM");
            const gone = await waitFor(() => exited, 10_000);
            if (!gone) child.kill("SIGKILL");
          }
          rmSync(join(dir, "launcher.json"), { force: true });
        },
      };
    }
    if (!exited) child.kill("SIGKILL");
    lastError = existsSync(join(dir, "server.log")) ? readFileSync(join(dir, "server.log"), "utf8").split("\n").slice(-5).join("\n") : "";
    if (port) break; // a configured port that fails will fail again
  }
  throw new Error(`could not start ${bin.path} (${bin.flavor} ${bin.version}) in ${dir}:\n${lastError}`);
}
