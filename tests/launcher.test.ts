/**
 * The embedded server launcher: binary discovery and its errors, AOF
 * persistence across restarts, and no orphans after a kill -9 of the parent.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findServerBinary, freePort, isAlive as alive, launchValkey, ping } from "../worker-host/valkey-launcher";
import { connectValkey } from "../worker-host/valkey";
import { startFixture } from "./helpers/fixture";
import { eventually } from "./helpers/valkey";

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "edgepipe-launcher-"));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));


/** Launches a server from a child process (the fixture) and returns its pid and port. */
const launchInChild = (dir: string, watch: boolean) => startFixture<{ pid: number; port: number }>("launch-and-wait.ts", [dir, watch ? "watch" : "no-watch"]);

describe("valkey launcher", () => {
  it("finds a server binary and reports its flavor and version", () => {
    const bin = findServerBinary();
    expect(["valkey", "redis"]).toContain(bin.flavor);
    expect(bin.version).toMatch(/^\d+\.\d+\.\d+$/);
    // VALKEY_SERVER=/path/to/valkey-server npm test runs every file against that binary.
    expect(findServerBinary({ PATH: "", VALKEY_SERVER: bin.path }).path).toBe(bin.path);
    if (process.env.VALKEY_SERVER) expect(bin.path).toBe(process.env.VALKEY_SERVER);
  });

  it("picks free ports below the kernel's ephemeral range, so no client socket takes one before a restart on it", async () => {
    const [low] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    for (const port of ports) expect(port < low && port >= 10_000, `port ${port} (ephemeral range from ${low})`).toBe(true);
    expect(new Set(ports).size).toBeGreaterThan(15);
  });

  it("explains how to install a server when none is found", () => {
    expect(() => findServerBinary({ PATH: "/nonexistent" })).toThrow(/apt-get install redis-server[\s\S]*brew install valkey[\s\S]*VALKEY_URL/);
    expect(() => findServerBinary({ PATH: process.env.PATH, VALKEY_SERVER: "/no/such/valkey-server" })).toThrow(/VALKEY_SERVER=\/no\/such\/valkey-server does not exist/);
  });

  it("keeps data across restarts with AOF on, and never uses port 6379 by default", async () => {
    const dir = tempDir();
    const first = await launchValkey({ dataDir: dir });
    expect(first.port).not.toBe(6379);
    const c1 = connectValkey(first.url);
    await c1.set("survives", "restart");
    await c1.quit();
    await first.stop();
    expect(alive(first.pid)).toBe(false);
    const second = await launchValkey({ dataDir: dir });
    const c2 = connectValkey(second.url);
    expect(await c2.get("survives")).toBe("restart");
    expect(await c2.config("GET", "appendfsync")).toEqual(["appendfsync", "everysec"]);
    expect(await c2.config("GET", "bind")).toEqual(["bind", "127.0.0.1"]);
    await c2.quit();
    await second.stop();
  });

  it("stops a server orphaned by a kill -9 of its parent on the next start", async () => {
    const dir = tempDir();
    const { child, info } = await launchInChild(dir, false);
    child.kill("SIGKILL");
    await eventually(() => child.exitCode !== null || child.signalCode !== null);
    // The orphan is still serving...
    expect(alive(info.pid)).toBe(true);
    expect(await ping(info.port)).toBe(true);
    // ...until the next start in the same data dir finds it by its pidfile.
    const next = await launchValkey({ dataDir: dir, appendOnly: false });
    expect(alive(info.pid)).toBe(false);
    expect(next.pid).not.toBe(info.pid);
    await next.stop();
  });

  it("stops the server by itself when its parent is killed with -9 (watchdog)", async () => {
    const dir = tempDir();
    const { child, info } = await launchInChild(dir, true);
    expect(alive(info.pid)).toBe(true);
    child.kill("SIGKILL");
    await eventually(() => !alive(info.pid), { timeoutMs: 10_000, stepMs: 100 });
  });
});
