/**
 * Stage workers under real faults, at test timings: a server killed with -9
 * and restarted on its AOF (the watchdog fires while the blocking connection
 * is down), a network path frozen by a TCP proxy that stops forwarding
 * without closing, and a stage whose handler hangs while work waits (the
 * host's /health names it).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createApp } from "../functions/app";
import { randomHex } from "../functions/envelope";
import { createKeys } from "../functions/keys";
import { definePipeline, defineStage } from "../functions/pipeline";
import type { AppEnv } from "../functions/redis";
import { startRuns } from "../functions/runs";
import { readStats } from "../functions/stats";
import { WorkerHost } from "../worker-host/host";
import { InProcessInvoker } from "../worker-host/invoker";
import { serveHttp } from "../worker-host/server";
import { connectValkey, runScript, upstashOverValkey, type Connection } from "../worker-host/valkey";
import { countingPipeline, makeHost } from "./helpers/pipelines";
import { startRestartableValkey, type RestartableValkey } from "./helpers/restartable-valkey";
import { startTcpProxy, type TcpProxy } from "./helpers/tcp-proxy";
import { eventually, testKeys } from "./helpers/valkey";

let v: RestartableValkey;
const conns: Connection[] = [];
const quietLog = () => {};
const connect = (url: string, opts: { stallMs?: number; log?: (l: string) => void } = {}) => {
  const c = connectValkey(url, { name: "faults-test", log: quietLog, ...opts });
  conns.push(c);
  return c;
};

beforeAll(async () => {
  v = await startRestartableValkey({ appendfsync: "always" });
});
afterAll(async () => {
  for (const c of conns) c.disconnect();
  await v?.stop();
});

async function statuses(conn: Connection, keys: ReturnType<typeof testKeys>, runIds: string[]) {
  return Promise.all(runIds.map((id) => conn.hget(keys.run(id), "status")));
}

describe("stage workers under faults", () => {
  it("read again after a kill -9 and restart even when the watchdog fired during the outage", async () => {
    const conn = connect(v.url);
    const keys = testKeys();
    const pipeline = countingPipeline();
    const lines: string[] = [];
    // Watchdog after 200 + 800 ms: it fires while the blocking connections cannot reconnect.
    const { host } = makeHost({ pipeline, keys, conn, redis: upstashOverValkey(conn), tuning: { blockMs: 200, watchdogGraceMs: 800 }, log: (l) => lines.push(l) });
    await host.run();
    const first = await startRuns(upstashOverValkey(conn), [{ n: 1 }], { keys, pipeline });
    await eventually(async () => (await statuses(conn, keys, first)).every((s) => s === "completed"));

    await v.kill9();
    await new Promise((r) => setTimeout(r, 3000));
    await v.restart();
    const upAt = performance.now();
    await eventually(() => conn.status === "ready", { timeoutMs: 5000 });
    const second = await startRuns(upstashOverValkey(conn), [{ n: 2 }, { n: 3 }], { keys, pipeline });
    await eventually(async () => (await statuses(conn, keys, second)).every((s) => s === "completed"), { timeoutMs: 8000, stepMs: 20 });
    const recoveredMs = performance.now() - upAt;
    await host.close();
    console.log(`kill -9 + 3 s outage: runs of both stages completed ${recoveredMs.toFixed(0)} ms after the restart`);
    expect(lines.some((l) => /read failed/.test(l))).toBe(true);
    expect(lines.some((l) => /working again/.test(l))).toBe(true);
  });

  it("abandon reads and replies stuck on a frozen network path, and lose nothing once it thaws", async () => {
    const proxy: TcpProxy = await startTcpProxy({ port: v.port });
    try {
      const direct = connect(v.url);
      const conn = connect(proxy.url, { stallMs: 1000 });
      const keys = testKeys();
      const pipeline = countingPipeline();
      const lines: string[] = [];
      const { host } = makeHost({ pipeline, keys, conn, redis: upstashOverValkey(conn), tuning: { blockMs: 200, watchdogGraceMs: 300, visibilityMs: 1000 }, log: (l) => lines.push(l) });
      await host.run();
      const before = await startRuns(upstashOverValkey(direct), [{ n: 1 }, { n: 2 }], { keys, pipeline });
      await eventually(async () => (await statuses(direct, keys, before)).every((s) => s === "completed"));

      proxy.freeze();
      // Entries arrive while the host's path is frozen (the server may hand some to a read whose reply never gets through).
      const during = await startRuns(upstashOverValkey(direct), Array.from({ length: 20 }, (_, i) => ({ n: 10 + i })), { keys, pipeline });
      // A script call on the frozen connection fails within the stall bound instead of waiting for the network.
      const started = performance.now();
      await expect(runScript(conn, "serverInfo", [], [])).rejects.toThrow(/no reply from the server|Connection is closed|max retries/);
      const failedAfterMs = performance.now() - started;
      expect(failedAfterMs).toBeLessThan(3000);
      await eventually(() => lines.some((l) => /did not settle/.test(l)), { timeoutMs: 5000 });
      await new Promise((r) => setTimeout(r, 1000));
      proxy.thaw();
      const thawedAt = performance.now();

      await eventually(async () => (await statuses(direct, keys, during)).every((s) => s === "completed"), { timeoutMs: 15_000, stepMs: 20 });
      const recoveredMs = performance.now() - thawedAt;
      await host.close();
      // Each run reached the second stage exactly once, and each handler's effect happened once.
      const calls = (await direct.hgetall(`${keys.prefix}:calls:second`)) as Record<string, string>;
      for (const n of [1, 2, ...Array.from({ length: 20 }, (_, i) => 10 + i)]) expect(calls[String(n)]).toBe("1");
      const stats = await readStats(upstashOverValkey(direct), keys, pipeline);
      expect(stats.stages.map((s) => [s.name, s.processed, s.pending])).toEqual([["first", 22, 0], ["second", 22, 0]]);
      console.log(`frozen path: a script call failed after ${failedAfterMs.toFixed(0)} ms; after the thaw all runs completed in ${recoveredMs.toFixed(0)} ms`);
    } finally {
      await proxy.close();
    }
  });

  it("ride out a CLIENT PAUSE longer than the read watchdog and the stall bound, committing every entry once", async () => {
    const conn = connect(v.url, { stallMs: 1000 });
    const admin = connect(v.url);
    const keys = testKeys();
    const pipeline = countingPipeline();
    const lines: string[] = [];
    const { host } = makeHost({ pipeline, keys, conn, redis: upstashOverValkey(conn), tuning: { blockMs: 200, watchdogGraceMs: 300, visibilityMs: 1000 }, log: (l) => lines.push(l) });
    await host.run();
    const runIds = await startRuns(upstashOverValkey(admin), Array.from({ length: 30 }, (_, n) => ({ n })), { keys, pipeline });
    await admin.client("PAUSE", 2500, "ALL");
    const pausedAt = performance.now();
    await eventually(async () => (await statuses(admin, keys, runIds)).every((s) => s === "completed"), { timeoutMs: 15_000, stepMs: 20 });
    const doneMs = performance.now() - pausedAt;
    await host.close();
    expect(doneMs).toBeGreaterThan(2000);
    expect(lines.some((l) => /did not settle/.test(l))).toBe(true);
    // Every step committed once. Handlers are at least once (docs/guarantees.md): a pause that
    // catches a batch after its handlers' own writes and before its commit stalls the commit,
    // the connection is dropped and the entries are redelivered, so those handlers run again
    // (seen in one CI run: a handler's counter at 2). What must hold is the commits.
    const calls = (await admin.hgetall(`${keys.prefix}:calls:second`)) as Record<string, string>;
    expect(Object.keys(calls).length).toBe(30);
    expect(Object.values(calls).every((c) => Number(c) >= 1)).toBe(true);
    const stats = await readStats(upstashOverValkey(admin), keys, pipeline);
    expect(stats.stages.map((s) => [s.name, s.processed, s.pending])).toEqual([["first", 30, 0], ["second", 30, 0]]);
    const again = Object.values(calls).filter((c) => c !== "1").length;
    console.log(`CLIENT PAUSE 2500 ALL: every run completed ${doneMs.toFixed(0)} ms after the pause began; ${again} of 30 second-stage handlers ran again after a stalled commit`);
  });

  it("reports a stage that makes no progress while work waits as 503 on /health, naming it", async () => {
    const conn = connect(v.url);
    const keys = createKeys({ prefix: `h${randomHex(3)}` });
    let release: () => void = () => {};
    const hung = new Promise<void>((r) => (release = r));
    const Payload = z.object({ n: z.number().int() });
    const pipeline = definePipeline({
      name: "hangs",
      stages: [
        defineStage({ name: "quick", input: Payload, next: ["stuck"], handle: async ({ n }) => ({ emit: [{ payload: { n } }], result: { n } }) }),
        defineStage({ name: "stuck", input: Payload, next: [], handle: async ({ n }) => (await hung, { result: { n } }) }),
      ],
    });
    const app = createApp({ pipeline });
    const env: AppEnv = { REDIS: upstashOverValkey(conn), KEY_PREFIX: keys.prefix, PARTITIONS: "1" };
    // One batch of one entry at a time: once the handler hangs, the rest waits undelivered.
    const host = new WorkerHost({ pipeline, keys, conn, invoker: new InProcessInvoker(app, env), tuning: { blockMs: 100, watchdogGraceMs: 200, batchSize: 1, concurrency: 1, visibilityMs: 60_000 }, log: quietLog });
    await host.run();
    const server = await serveHttp({ app, env, keys, pipeline, host, port: 0, hostname: "127.0.0.1" });
    try {
      const health = async () => {
        const res = await fetch(`${server.url}/health`);
        return { status: res.status, body: (await res.json()) as { ok: boolean; stuck?: Array<{ stage: string; reason: string }>; stages: Array<{ stage: string }> } };
      };
      expect((await health()).status).toBe(200);
      const runIds = await startRuns(upstashOverValkey(conn), [{ n: 1 }, { n: 2 }, { n: 3 }], { keys, pipeline });
      // On a loaded machine "quick" can itself be named for a moment before it has drained its three
      // entries; wait for the steady state, where only the hung stage is stuck.
      const stuck = await eventually(async () => {
        const h = await health();
        return h.status === 503 && h.body.stuck?.length === 1 ? h : null;
      }, { timeoutMs: 20_000, stepMs: 100 });
      expect(stuck.body.ok).toBe(false);
      expect(stuck.body.stuck?.map((s) => s.stage)).toEqual(["stuck"]);
      expect(stuck.body.stuck?.[0].reason).toMatch(/1 batch\(es\) in flight, none finished .* 2 entr\(ies\) undelivered/);
      expect(stuck.body.stages.map((s) => s.stage)).toEqual(["quick", "stuck"]);
      release();
      await eventually(async () => (await statuses(conn, keys, runIds)).every((s) => s === "completed"));
      await eventually(async () => (await health()).status === 200, { timeoutMs: 5000 });
    } finally {
      release();
      await server.close();
      await host.close();
    }
  });

  it("answers /health 503 within a second, ingest 503 within the stall bound, and closes within the bound while the path to the server is frozen", async () => {
    const proxy = await startTcpProxy({ port: v.port });
    try {
      const conn = connect(proxy.url, { stallMs: 1000 });
      const keys = createKeys({ prefix: `f${randomHex(3)}` });
      const pipeline = countingPipeline();
      const app = createApp({ pipeline });
      const env: AppEnv = { REDIS: upstashOverValkey(conn), KEY_PREFIX: keys.prefix, PARTITIONS: "1" };
      const host = new WorkerHost({ pipeline, keys, conn, invoker: new InProcessInvoker(app, env), tuning: { blockMs: 1000 }, log: quietLog });
      await host.run();
      const server = await serveHttp({ app, env, keys, pipeline, host, port: 0, hostname: "127.0.0.1" });
      try {
        expect((await fetch(`${server.url}/health`)).status).toBe(200);
        proxy.freeze();
        const started = performance.now();
        const res = await fetch(`${server.url}/health`, { signal: AbortSignal.timeout(5000) });
        const ms = performance.now() - started;
        expect(res.status).toBe(503);
        expect(ms).toBeLessThan(1000);
        const ingestStarted = performance.now();
        const ingest = await fetch(`${server.url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads: [{ n: 1 }] }), signal: AbortSignal.timeout(10_000) });
        const ingestMs = performance.now() - ingestStarted;
        expect(ingest.status).toBe(503);
        expect(((await ingest.json()) as { error: { code: string } }).error.code).toBe("unavailable");
        expect(ingestMs).toBeLessThan(3000);
        console.log(`frozen path: /health 503 in ${ms.toFixed(0)} ms, ingest 503 in ${ingestMs.toFixed(0)} ms (stall bound 1000 ms)`);
        const closeStarted = performance.now();
        await host.close();
        expect(performance.now() - closeStarted).toBeLessThan(4000);
      } finally {
        await server.close();
      }
    } finally {
      proxy.thaw();
      await proxy.close();
    }
  });
});
