/**
 * Backpressure (issue 10, item 5): a stalled consumer group plus heavy ingest.
 * Ingest answers 429 with Retry-After once the entry stage's backlog reaches
 * BACKPRESSURE_MAX_LAG, nothing of a refused batch is written (server memory
 * stays flat once throttled), trimming never goes above the oldest pending or
 * undelivered entry, and once workers start every accepted run finishes.
 * Also: the limit on a server that reports the lag as nil (Redis 7.0 after an
 * AOF reload), POST /v1/runs, and a batch over several partitions.
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../functions/app";
import { app as newsApp, pipeline as newsPipeline } from "../functions/news/index";
import { articlesFromCsv } from "../functions/news/csv";
import { generateDemoArticles } from "../functions/news/demo-feed";
import type { ArticleInput } from "../functions/news/schema";
import type { AppEnv } from "../functions/redis";
import { readStats, renderPrometheus } from "../functions/stats";
import { WorkerHost } from "../worker-host/host";
import { InProcessInvoker } from "../worker-host/invoker";
import { runStatuses, waitForRuns } from "../worker-host/news/news-check";
import { connectValkey, runScript, upstashOverValkey, type Connection } from "../worker-host/valkey";
import { countingPipeline } from "./helpers/pipelines";
import { startRestartableValkey, type RestartableValkey } from "./helpers/restartable-valkey";
import { eventually, startTestValkey, testKeys, type TestValkey } from "./helpers/valkey";

const AG_NEWS = process.env.AG_NEWS_CSV ?? fileURLToPath(new URL("../../shared/data/ag_news_test.csv", import.meta.url));
function loadArticles(n: number): ArticleInput[] {
  if (existsSync(AG_NEWS)) return articlesFromCsv(readFileSync(AG_NEWS, "utf8")).slice(0, n).map((r) => ({ title: r.title, body: r.body, source: "ag_news" }));
  console.warn(`[backpressure] ${AG_NEWS} is absent: using the demo generator`);
  return generateDemoArticles(n, { seed: 5 }).map(({ intendedTopic: _t, ...a }) => a);
}

async function usedMemory(conn: Connection): Promise<number> {
  const info = await conn.info("memory");
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1]);
}

let v: TestValkey;
beforeAll(async () => {
  v = await startTestValkey();
});
afterAll(async () => {
  await v?.stop();
});

describe("a stalled consumer group under heavy ingest", () => {
  it("answers 429 past the limit, writes nothing of refused batches, trims nothing unacknowledged, loses nothing once workers start", async () => {
    const LIMIT = 2000;
    const BATCH = 250;
    const keys = testKeys();
    const env: AppEnv = { REDIS: v.redis, KEY_PREFIX: keys.prefix, PARTITIONS: "1", BACKPRESSURE_MAX_LAG: String(LIMIT) };
    const http = newsApp;
    const stream = keys.stream("fetcher", 0);
    const group = keys.group("fetcher");
    // A host created the group, took 300 entries and stopped (killed, or frozen) after acknowledging 100.
    await v.conn.xgroup("CREATE", stream, group, "0", "MKSTREAM");
    const articles = loadArticles(LIMIT + 4 * BATCH);
    const post = (batch: ArticleInput[]) =>
      http.request("/v1/articles", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ articles: batch }) }, env);

    const first = await post(articles.slice(0, 300));
    expect(first.status).toBe(202);
    const accepted: string[] = ((await first.json()) as { runIds: string[] }).runIds;
    const taken = (await v.conn.xreadgroup("GROUP", group, "gone", "COUNT", 300, "STREAMS", stream, ">")) as Array<[string, Array<[string, string[]]>]>;
    const takenIds = taken[0][1].map(([id]) => id);
    expect(takenIds).toHaveLength(300);
    await v.conn.xack(stream, group, ...takenIds.slice(0, 100));
    // The runs of the 100 acknowledged entries count as done by the host that took them (it committed them).
    const committedElsewhere = new Set(accepted.slice(0, 100));

    const baseline = await usedMemory(v.conn);
    const baselineRuns = accepted.length;
    let ok = 1;
    let refused = 0;
    let firstRefusal: { status: number; retryAfter: string | null; body: { error: { code: string; message: string; stage: string; backlog: number; limit: number } } } | undefined;
    // Heavy ingest until throttled (bounded: the limit is reached after about 2000 runs).
    for (let at = 300; at < articles.length && !firstRefusal; at += BATCH) {
      const res = await post(articles.slice(at, at + BATCH));
      if (res.status === 202) {
        ok++;
        accepted.push(...((await res.json()) as { runIds: string[] }).runIds);
      } else {
        refused++;
        firstRefusal = { status: res.status, retryAfter: res.headers.get("retry-after"), body: (await res.json()) as never };
      }
    }
    expect(firstRefusal, "ingest was never throttled").toBeDefined();
    expect(firstRefusal!.status).toBe(429);
    expect(Number(firstRefusal!.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(firstRefusal!.body.error).toMatchObject({ code: "backpressure", stage: "fetcher", limit: LIMIT });
    expect(firstRefusal!.body.error.backlog).toBeGreaterThanOrEqual(LIMIT);
    expect(firstRefusal!.body.error.message).toMatch(/stage fetcher is behind/);
    // The backlog (200 pending + the undelivered) reached the limit with the last accepted batch, not before.
    const backlogAccepted = accepted.length - 100;
    expect(backlogAccepted).toBeGreaterThanOrEqual(LIMIT);
    expect(backlogAccepted - BATCH).toBeLessThan(LIMIT);
    const atLimit = await usedMemory(v.conn);

    // Throttled: 20 more batches (5,000 runs) are refused and leave nothing behind.
    const lengthBefore = await v.conn.xlen(stream);
    for (let k = 0; k < 20; k++) {
      const res = await post(articles.slice(0, BATCH));
      expect(res.status).toBe(429);
      refused++;
    }
    expect(await v.conn.xlen(stream)).toBe(lengthBefore);
    const afterThrottle = await usedMemory(v.conn);
    const perRun = (atLimit - baseline) / (accepted.length - baselineRuns);
    console.log(
      `[backpressure] used_memory: ${(baseline / 1e6).toFixed(2)} MB with ${baselineRuns} runs, ${(atLimit / 1e6).toFixed(2)} MB when throttled at ${accepted.length} runs ` +
        `(${(perRun / 1024).toFixed(1)} KB per waiting news run), ${(afterThrottle / 1e6).toFixed(2)} MB after ${20 * BATCH} more runs were refused ` +
        `(${((afterThrottle - atLimit) / 1024).toFixed(1)} KB change; accepted they would have taken ~${((20 * BATCH * perRun) / 1e6).toFixed(1)} MB); ${ok} x 202, ${refused} x 429`,
    );
    // Bounded: the refused runs would have added megabytes; what changes is client buffers and counters.
    expect(afterThrottle - atLimit).toBeLessThan(Math.max(512 * 1024, 0.05 * 20 * BATCH * perRun));
    expect(perRun).toBeGreaterThan(0);

    // Trimming with a soft cap far below the backlog removes the 100 acknowledged entries, nothing else.
    const host = new WorkerHost({ pipeline: newsPipeline, keys, conn: v.conn, invoker: new InProcessInvoker(http, env), streamMaxLen: 100 });
    expect(await host.trimStreams()).toBe(100);
    expect(await v.conn.xlen(stream)).toBe(accepted.length - 100);
    expect(Number(await runScript(v.conn, "trimStream", [stream], [100]))).toBe(0);

    // Counted where every host and Worker sees it.
    const stats = await readStats(v.redis, keys, newsPipeline);
    const fetcher = stats.stages.find((s) => s.name === "fetcher")!;
    expect([fetcher.throttled, fetcher.throttledRuns]).toEqual([refused, refused * BATCH]);
    expect(fetcher.pending + fetcher.lag).toBe(accepted.length - 100);
    const metrics = renderPrometheus(stats);
    expect(metrics).toContain(`edgepipe_stage_throttled_total{stage="fetcher"} ${refused}`);
    expect(metrics).toContain(`edgepipe_stage_throttled_runs_total{stage="fetcher"} ${refused * BATCH}`);
    const statsRes = await http.request("/v1/stats", {}, env);
    expect(((await statsRes.json()) as { stages: Array<{ name: string; throttled: number }> }).stages.find((s) => s.name === "fetcher")?.throttled).toBe(refused);

    // Workers start: the 200 entries the stalled consumer held are reclaimed, every accepted run finishes.
    const worker = new WorkerHost({
      pipeline: newsPipeline,
      keys,
      conn: v.conn,
      invoker: new InProcessInvoker(http, env),
      tuning: { blockMs: 200, visibilityMs: 1000, reclaimIntervalMs: 200 },
    });
    await worker.run();
    try {
      const waiting = accepted.filter((id) => !committedElsewhere.has(id));
      const statuses = await waitForRuns(v.conn, keys, waiting, { timeoutMs: 240_000 });
      const counts = statuses.reduce<Record<string, number>>((m, s) => ((m[s] = (m[s] ?? 0) + 1), m), {});
      console.log(`[backpressure] after the workers started: ${JSON.stringify(counts)} of ${waiting.length} accepted runs`);
      // Nothing lost: every accepted run completed (or was skipped as a duplicate article), none failed or vanished.
      expect(statuses.filter((s) => s !== "completed" && s !== "skipped")).toEqual([]);
      expect(await runStatuses(v.conn, keys, [...committedElsewhere])).toEqual([...committedElsewhere].map(() => "running"));
      // The backlog is gone, so ingest is accepted again.
      const again = await post(articles.slice(0, 5));
      expect(again.status).toBe(202);
    } finally {
      await worker.close();
    }
  }, 300_000);
});

describe("the limit itself", () => {
  it("POST /v1/runs: 429 names the stage; 0 turns the check off", async () => {
    const keys = testKeys();
    const pipeline = countingPipeline();
    const app = createApp({ pipeline });
    const env = (limit: number): AppEnv => ({ REDIS: v.redis, KEY_PREFIX: keys.prefix, PARTITIONS: "1", BACKPRESSURE_MAX_LAG: String(limit) });
    const post = (n: number, limit: number) =>
      app.request("/v1/runs", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads: Array.from({ length: n }, (_, i) => ({ n: i })) }) }, env(limit));
    // No group yet (no worker ever read the stream): every entry waits.
    expect((await post(30, 50)).status).toBe(202);
    expect((await post(30, 50)).status).toBe(202);
    const res = await post(1, 50);
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("1");
    expect(((await res.json()) as { error: { stage: string; backlog: number } }).error).toMatchObject({ stage: "first", backlog: 60 });
    expect(await v.conn.xlen(keys.stream("first", 0))).toBe(60);
    expect((await post(1, 0)).status).toBe(202);
    expect((await post(1, 62)).status).toBe(202);
  });

  it("a batch over several partitions is refused whole when one partition is behind", async () => {
    const keys = testKeys(4);
    const pipeline = countingPipeline();
    const app = createApp({ pipeline });
    const env: AppEnv = { REDIS: v.redis, KEY_PREFIX: keys.prefix, PARTITIONS: "4", BACKPRESSURE_MAX_LAG: "20" };
    // Partition 2 is behind: 25 entries wait there.
    const pipe = v.conn.pipeline();
    for (let i = 0; i < 25; i++) pipe.xadd(keys.stream("first", 2), "*", "e", "{}");
    await pipe.exec();
    const lengths = () => Promise.all(keys.allPartitions.map((p) => v.conn.xlen(keys.stream("first", p))));
    const before = await lengths();
    const res = await app.request("/v1/runs", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads: Array.from({ length: 40 }, (_, i) => ({ n: i })) }) }, env);
    expect(res.status).toBe(429);
    expect(await lengths()).toEqual(before);
    const stats = await readStats(v.redis, keys, pipeline);
    expect(stats.stages.find((s) => s.name === "first")?.throttled).toBe(1);
  });
});

describe("on a server that reports the lag as nil after an AOF reload", () => {
  let r: RestartableValkey;
  let conn: Connection;
  beforeAll(async () => {
    r = await startRestartableValkey({ appendfsync: "always" });
    conn = connectValkey(r.url, { name: "backpressure-lag", log: () => {} });
  });
  afterAll(async () => {
    conn?.disconnect();
    await r?.stop();
  });

  it("counts pending + undelivered against the limit", async () => {
    const keys = testKeys();
    const pipeline = countingPipeline();
    const stream = keys.stream("first", 0);
    await conn.xgroup("CREATE", stream, "first", "0", "MKSTREAM");
    const pipe = conn.pipeline();
    for (let i = 0; i < 2500; i++) pipe.xadd(stream, "*", "e", JSON.stringify({ n: i }));
    await pipe.exec();
    await conn.xreadgroup("GROUP", "first", "reader", "COUNT", 1200, "STREAMS", stream, ">");
    await r.restart();
    await eventually(async () => (await conn.ping()) === "PONG", { timeoutMs: 10_000 });
    const groups = (await conn.xinfo("GROUPS", stream)) as unknown[][];
    const lagField = groups[0].indexOf("lag");
    console.log(`[backpressure] lag the server reports after the restart: ${groups[0][lagField + 1] ?? "nil (counted by enqueue-runs.lua)"}`);
    const app = createApp({ pipeline });
    const post = (limit: number) =>
      app.request(
        "/v1/runs",
        { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads: [{ n: 1 }] }) },
        { REDIS: upstashOverValkey(conn), KEY_PREFIX: keys.prefix, PARTITIONS: "1", BACKPRESSURE_MAX_LAG: String(limit) },
      );
    // 1,200 pending + 1,300 undelivered = 2,500 waiting.
    const refused = await post(2500);
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { backlog: number } }).error.backlog).toBeGreaterThanOrEqual(2500);
    expect((await post(2501)).status).toBe(202);
    expect(await conn.xlen(stream)).toBe(2501);
  }, 60_000);
});
