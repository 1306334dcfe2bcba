/**
 * DURABLE_ACCEPT=on on a Valkey Cluster: the barrier runs INCR <mark of a
 * slot the master owns> + WAITAOF on every master at once, each on its own
 * connection, and a 202 waits for all of them (Valkey build: WAITAOF); a
 * master that does not confirm makes it a 503 not_durable naming that master;
 * the REST bridge answers the Worker's WAITAOF with the same barrier; a
 * cluster whose masters have no WAITAOF (Redis 7.0, CI) refuses to start,
 * naming every master.
 */
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../functions/app";
import { randomHex } from "../functions/envelope";
import { settingsFor } from "../functions/config";
import { loadConfig } from "../worker-host/config";
import { waitForRuns } from "../worker-host/news/news-check";
import { startRestBridge } from "../worker-host/rest-bridge";
import { startRuntime, type Runtime } from "../worker-host/runtime";
import { probeBinary } from "../worker-host/valkey-launcher";
import { countingPipeline } from "./helpers/pipelines";
import { startTestCluster, type TestCluster } from "./helpers/cluster";

const VALKEY_BUILD = process.env.VALKEY_BUILD ?? "/work/valkey-build/src/valkey-server";
const REDIS_70 = "/usr/bin/redis-server";
const pipeline = countingPipeline();
const app = createApp({ pipeline });

function configFor(seeds: string, vars: Record<string, string> = {}) {
  return loadConfig({ VALKEY_CLUSTER_NODES: seeds, PORT: "0", DEMO: "off", WEB_DIR: "", DURABLE_ACCEPT: "on", DURABLE_ACCEPT_TIMEOUT_MS: "1500", BACKPRESSURE_MAX_LAG: "0", KEY_PREFIX: `cd${randomHex(3)}`, ...vars });
}

async function postRuns(url: string, n: number): Promise<Response> {
  return fetch(`${url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads: Array.from({ length: n }, (_, i) => ({ n: i })) }) });
}

async function waitaofCalls(t: TestCluster): Promise<number[]> {
  return Promise.all(t.client.nodes("master").map(async (n) => Number(/cmdstat_waitaof:calls=(\d+)/.exec(String(await n.info("commandstats")))?.[1] ?? 0)));
}

describe.skipIf(!existsSync(VALKEY_BUILD))(`on a 3-master cluster with WAITAOF (${VALKEY_BUILD})`, () => {
  let t: TestCluster;
  let runtime: Runtime;
  const lines: string[] = [];
  beforeAll(async () => {
    t = await startTestCluster({ masters: 3, appendOnly: true, binary: probeBinary(VALKEY_BUILD) });
    runtime = await startRuntime({ config: configFor(t.cluster.seedList), pipeline, app, log: (l) => lines.push(l) });
  }, 60_000);
  afterAll(async () => {
    await runtime?.close();
    await t?.stop();
  });

  it("answers 202 once every master confirmed its fsync (WAITAOF on each), group-committed; the runs complete", async () => {
    expect(lines.join("\n")).toMatch(/DURABLE_ACCEPT=on: ingest waits for the fsync with WAITAOF on each of the 3 masters \(valkey .*appendfsync everysec\)/);
    const before = await waitaofCalls(t);
    const rounds = runtime.barrier!.counts.rounds;
    const answers = await Promise.all(Array.from({ length: 20 }, () => postRuns(runtime.url, 6)));
    expect(answers.map((r) => r.status)).toEqual(answers.map(() => 202));
    const after = await waitaofCalls(t);
    // Every master was asked, and 20 ingests shared fewer rounds than 20.
    after.forEach((n, i) => expect(n).toBeGreaterThan(before[i]));
    const used = runtime.barrier!.counts.rounds - rounds;
    expect(used).toBeGreaterThanOrEqual(1);
    expect(used).toBeLessThan(20);
    const runIds = (await Promise.all(answers.map((r) => r.json() as Promise<{ runIds: string[] }>))).flatMap((b) => b.runIds);
    expect(runIds).toHaveLength(120);
    const { keys } = settingsFor(runtime.env);
    expect(new Set(runIds.map((id) => keys.partitionOf(id))).size).toBeGreaterThan(6);
    expect((await waitForRuns(runtime.conn, keys, runIds, { timeoutMs: 60_000 })).every((s) => s === "completed")).toBe(true);
    console.log(`[cluster-durable] 20 concurrent ingests (120 runs over ${new Set(runIds.map((id) => keys.partitionOf(id))).size} partitions): ${used} barrier round(s), WAITAOF per master ${after.map((n, i) => n - before[i]).join(" / ")}`);
  });

  it("a master that does not confirm makes the ingest 503 not_durable, naming that master; the bridge answers WAITAOF with the barrier", async () => {
    const [m0] = t.client.nodes("master");
    const at = `${m0.options.host}:${m0.options.port}`;
    await m0.config("SET", "appendfsync", "no");
    try {
      const res = await postRuns(runtime.url, 12);
      expect(res.status).toBe(503);
      const body = (await res.json()) as { error: { code: string; message: string; runIds: string[] } };
      expect(body.error.code).toBe("not_durable");
      expect(body.error.message).toContain(`WAITAOF failed on 1 of 3 masters (${at}: not confirmed within 1500 ms)`);
      expect(body.error.runIds).toHaveLength(12);
    } finally {
      await m0.config("SET", "appendfsync", "everysec");
    }
    expect((await postRuns(runtime.url, 3)).status).toBe(202);
    const bridge = await startRestBridge({ conn: runtime.conn, token: "cluster-durable-token", fsyncBarrier: runtime.barrier });
    try {
      const res = await fetch(bridge.url, { method: "POST", headers: { authorization: "Bearer cluster-durable-token" }, body: JSON.stringify(["WAITAOF", "1", "0", "1000"]) });
      expect(await res.json()).toEqual({ result: [1, 0] });
    } finally {
      await bridge.close();
    }
  }, 30_000);
});

describe.skipIf(!existsSync(REDIS_70))("on a cluster without WAITAOF (Redis 7.0)", () => {
  it("refuses to start, naming every master and what to change", async () => {
    const t = await startTestCluster({ masters: 3, appendOnly: true, binary: probeBinary(REDIS_70) });
    try {
      const err = await startRuntime({ config: configFor(t.cluster.seedList), pipeline, app, log: () => {} }).then(() => null, (e: Error) => e);
      expect(err?.message).toMatch(/^DURABLE_ACCEPT=on on a cluster needs every master to confirm its fsync; 3 of 3 cannot: master 127\.0\.0\.1:\d+: redis 7\.0\.\d+ has no WAITAOF \(it needs Valkey >= 8 or Redis >= 7\.2\)/);
      expect(err!.message.match(/master 127\.0\.0\.1:\d+/g)).toHaveLength(3);
    } finally {
      await t.stop();
    }
  }, 60_000);
});
