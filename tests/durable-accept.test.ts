/**
 * Durable acceptance (issue 10, item 4): with DURABLE_ACCEPT=on ingest answers
 * 202 only once the server confirms the fsync. Against the Valkey build
 * (WAITAOF, group-committed: one round covers the ingests in flight; a WAITAOF
 * that does not confirm answers 503 not_durable and the runs exist), through
 * the REST bridge (the edge path's WAITAOF), and against Redis 7.0 (no
 * WAITAOF: a start-up error unless appendfsync is always; the embedded server
 * is switched to always).
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../functions/app";
import type { AppEnv } from "../functions/redis";
import { loadConfig } from "../worker-host/config";
import { startRestBridge } from "../worker-host/rest-bridge";
import { startRuntime, type Runtime } from "../worker-host/runtime";
import { connectValkey, type Connection } from "../worker-host/valkey";
import { checkDurability, ValkeyFsyncBarrier } from "../worker-host/fsync-barrier";
import { launchValkey, probeBinary, type RunningValkey } from "../worker-host/valkey-launcher";
import { countingPipeline } from "./helpers/pipelines";
import { testKeys } from "./helpers/valkey";

const VALKEY_BUILD = process.env.VALKEY_BUILD ?? "/work/valkey-build/src/valkey-server";
const REDIS_70 = "/usr/bin/redis-server";
const pipeline = countingPipeline();
const app = createApp({ pipeline });

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "edgepipe-durable-"));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function configFor(vars: Record<string, string>) {
  return loadConfig({ PORT: "0", DEMO: "off", WEB_DIR: "", DURABLE_ACCEPT: "on", BACKPRESSURE_MAX_LAG: "0", ...vars });
}

async function postRuns(url: string, n: number): Promise<Response> {
  return fetch(`${url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads: Array.from({ length: n }, (_, i) => ({ n: i })) }) });
}

async function launch(binary: string, appendfsync: "everysec" | "always", appendOnly = true): Promise<RunningValkey> {
  return launchValkey({ dataDir: tempDir(), binary: probeBinary(binary), appendOnly, extraArgs: ["--appendfsync", appendfsync] });
}

describe.skipIf(!existsSync(VALKEY_BUILD))(`with WAITAOF (${VALKEY_BUILD})`, () => {
  let runtime: Runtime;
  const lines: string[] = [];
  beforeAll(async () => {
    runtime = await startRuntime({ config: configFor({ VALKEY_SERVER: VALKEY_BUILD, VALKEY_DATA_DIR: tempDir() }), pipeline, app, log: (l) => lines.push(l) });
  }, 60_000);
  afterAll(async () => {
    await runtime?.close();
  });

  it("answers 202 after WAITAOF, one round for the ingests in flight", async () => {
    expect(lines.join("\n")).toMatch(/DURABLE_ACCEPT=on: ingest waits for the fsync with WAITAOF \(valkey .*appendfsync everysec\), group-committed/);
    const res = await postRuns(runtime.url, 3);
    expect(res.status).toBe(202);
    const before = { ...runtime.barrier!.counts };
    expect(before.rounds).toBeGreaterThanOrEqual(1);
    // 40 ingests at once: they share a handful of rounds.
    const answers = await Promise.all(Array.from({ length: 40 }, () => postRuns(runtime.url, 5)));
    expect(answers.map((r) => r.status)).toEqual(answers.map(() => 202));
    const waits = runtime.barrier!.counts.waits - before.waits;
    const rounds = runtime.barrier!.counts.rounds - before.rounds;
    console.log(`[durable-accept] 40 concurrent ingests: ${waits} waits served by ${rounds} WAITAOF round(s)`);
    expect(waits).toBe(40);
    expect(rounds).toBeLessThan(waits);
  });

  it("answers 503 not_durable, naming the runs that were written, when WAITAOF does not confirm", async () => {
    // appendfsync no: the server never fsyncs by itself, so WAITAOF times out with [0, 0].
    await runtime.conn.config("SET", "appendfsync", "no");
    try {
      const res = await postRuns(runtime.url, 2);
      expect(res.status).toBe(503);
      const body = (await res.json()) as { error: { code: string; message: string; runIds: string[] } };
      expect(body.error.code).toBe("not_durable");
      expect(body.error.message).toMatch(/were written but their fsync was not confirmed .*did not confirm the fsync within 2000 ms.*may exist/);
      expect(body.error.runIds).toHaveLength(2);
      for (const id of body.error.runIds) expect((await fetch(`${runtime.url}/v1/runs/${id}`)).status).toBe(200);
    } finally {
      await runtime.conn.config("SET", "appendfsync", "everysec");
    }
    expect((await postRuns(runtime.url, 1)).status).toBe(202);
  }, 30_000);

  it("refuses to start on appendfsync no or without the AOF, saying what to change", async () => {
    const noAof = await launch(VALKEY_BUILD, "everysec", false);
    const conn = connectValkey(noAof.url, { log: () => {} });
    try {
      await expect(checkDurability(conn)).rejects.toThrow(/needs the AOF, but valkey .* runs with appendonly no: turn it on/);
      await conn.config("SET", "appendonly", "yes");
      await conn.config("SET", "appendfsync", "no");
      await expect(checkDurability(conn)).rejects.toThrow(/appendfsync no, so it never fsyncs by itself/);
    } finally {
      conn.disconnect();
      await noAof.stop();
    }
  });

  it("the REST bridge answers the Worker's WAITAOF with the barrier (the edge path)", async () => {
    const server = await launch(VALKEY_BUILD, "everysec");
    const conn = connectValkey(server.url, { log: () => {} });
    const keys = testKeys();
    const barrier = new ValkeyFsyncBarrier({ source: conn, markKey: keys.fsyncMark(), mode: "waitaof", timeoutMs: 2000 });
    const bridge = await startRestBridge({ conn, token: "durable-test-token", fsyncBarrier: barrier });
    const plain = await startRestBridge({ conn, token: "durable-test-token" });
    const env = (url: string): AppEnv => ({ UPSTASH_REDIS_REST_URL: url, UPSTASH_REDIS_REST_TOKEN: "durable-test-token", KEY_PREFIX: keys.prefix, DURABLE_ACCEPT: "on" });
    const post = (url: string) => app.request("/v1/runs", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads: [{ n: 1 }, { n: 2 }] }) }, env(url));
    try {
      const ok = await post(bridge.url);
      expect(ok.status).toBe(202);
      expect(barrier.counts.rounds).toBe(1);
      // A bridge without a barrier refuses WAITAOF (blocking): the 202 cannot be promised.
      const refused = await post(plain.url);
      expect(refused.status).toBe(503);
      expect(((await refused.json()) as { error: { code: string; message: string } }).error.message).toMatch(/WAITAOF is a blocking command/);
    } finally {
      await bridge.close();
      await plain.close();
      await barrier.close();
      conn.disconnect();
      await server.stop();
    }
  });
});

describe("without WAITAOF (Redis 7.0)", () => {
  let conn: Connection | undefined;
  let server: RunningValkey | undefined;
  afterAll(async () => {
    conn?.disconnect();
    await server?.stop();
  });

  it("refuses to start with appendfsync everysec, starts with always", async () => {
    server = await launch(REDIS_70, "everysec");
    expect(server.binary.version).toMatch(/^7\.0\./);
    const lines: string[] = [];
    const config = configFor({ VALKEY_URL: server.url });
    await expect(startRuntime({ config, pipeline, app, log: (l) => lines.push(l) })).rejects.toThrow(
      /DURABLE_ACCEPT=on: redis 7\.0\.\d+ has no WAITAOF \(it needs Valkey >= 8 or Redis >= 7\.2\) and its appendfsync is everysec.*set appendfsync always/,
    );
    conn = connectValkey(server.url, { log: () => {} });
    await conn.config("SET", "appendfsync", "always");
    const runtime = await startRuntime({ config, pipeline, app, log: (l) => lines.push(l) });
    try {
      expect(lines.join("\n")).toMatch(/has no WAITAOF; appendfsync always fsyncs every write before its reply/);
      expect((await postRuns(runtime.url, 4)).status).toBe(202);
      expect(runtime.barrier!.counts).toMatchObject({ waits: 1, rounds: 0 });
    } finally {
      await runtime.close();
    }
  }, 60_000);

  it("switches its own embedded server to appendfsync always", async () => {
    const lines: string[] = [];
    const runtime = await startRuntime({ config: configFor({ VALKEY_SERVER: REDIS_70, VALKEY_DATA_DIR: tempDir() }), pipeline, app, log: (l) => lines.push(l) });
    try {
      expect(lines.join("\n")).toMatch(/the embedded server has no WAITAOF .* now runs with appendfsync always/);
      expect(await runtime.conn.config("GET", "appendfsync")).toEqual(["appendfsync", "always"]);
      expect((await postRuns(runtime.url, 2)).status).toBe(202);
    } finally {
      await runtime.close();
    }
  }, 60_000);
});
