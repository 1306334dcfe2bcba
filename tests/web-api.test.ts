/**
 * The API the web client explains itself with, through `app.request` against
 * a real server: the recent-runs index and GET /v1/runs (newest first over
 * partitions, status filter, bound, scan limit, validation), GET /v1/pipeline
 * for any pipeline, and the news app's GET /v1/demo-users.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../functions/app";
import { settingsFor } from "../functions/config";
import { randomHex } from "../functions/envelope";
import { examplePipeline } from "../functions/example/pipeline";
import { app as newsApp } from "../functions/news/index";
import { seedDemoUsers } from "../functions/news/users";
import type { AppEnv } from "../functions/redis";
import { spreadTag } from "../functions/keys";
import { RECENT_RUNS_SCAN, startRuns } from "../functions/runs";
import { startRestBridge, type RestBridge } from "../worker-host/rest-bridge";
import { makeHost } from "./helpers/pipelines";
import { eventually, startTestValkey, type TestValkey } from "./helpers/valkey";

let v: TestValkey;
beforeAll(async () => {
  v = await startTestValkey();
});
afterAll(async () => {
  await v?.stop();
});

const exampleApp = createApp({ pipeline: examplePipeline });
const envFor = (extra: Partial<AppEnv> = {}): AppEnv => ({ REDIS: v.redis, KEY_PREFIX: `w${randomHex(4)}`, ...extra });
const post = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function getJson(app: { request: typeof exampleApp.request }, path: string, env: AppEnv): Promise<{ status: number; body: any }> {
  const res = await app.request(path, {}, env);
  return { status: res.status, body: await res.json() };
}

async function startBatch(env: AppEnv, payloads: unknown[]): Promise<string[]> {
  const res = await exampleApp.request("/v1/runs", post({ payloads }), env);
  expect(res.status).toBe(202);
  return ((await res.json()) as { runIds: string[] }).runIds;
}

describe("GET /v1/runs", () => {
  it("lists runs newest first over every partition, with status, step and times", async () => {
    const env = envFor({ PARTITIONS: "4" });
    const { keys } = settingsFor(env);
    const batches: string[][] = [];
    for (let b = 0; b < 3; b++) {
      batches.push(await startBatch(env, Array.from({ length: 8 }, (_, i) => ({ text: `batch ${b} run ${i}` }))));
      await sleep(3); // distinct creation times between batches
    }
    expect(new Set(batches.flat().map((id) => keys.partitionOf(id))).size).toBeGreaterThan(1);
    const { status, body } = await getJson(exampleApp, "/v1/runs?limit=10", env);
    expect(status).toBe(200);
    expect(body.items).toHaveLength(10);
    expect(body.truncated).toBe(false);
    // The 8 runs of the last batch come first (any order inside the batch), then 2 of the batch before.
    expect(new Set(body.items.slice(0, 8).map((r: any) => r.runId))).toEqual(new Set(batches[2]));
    expect(batches[1]).toContain(body.items[8].runId);
    const created = body.items.map((r: any) => r.createdAt);
    expect(created).toEqual([...created].sort((a: number, b: number) => b - a));
    for (const r of body.items) {
      expect(r).toMatchObject({ status: "running", step: "normalize" });
      expect(r.updatedAt).toBeGreaterThanOrEqual(r.createdAt);
    }
    expect((await getJson(exampleApp, "/v1/runs", env)).body.items).toHaveLength(20); // default limit
    // The index of a partition carries the partition's hash tag, like its streams and checkpoints.
    for (const p of keys.allPartitions) expect(keys.recentRuns(p)).toContain(`{${spreadTag("p", p, keys.partitions)}}`);
  });

  it("reads status and step from the checkpoints: completed and dead-lettered runs, filtered", async () => {
    const env = envFor({ PARTITIONS: "2" });
    const { keys } = settingsFor(env);
    const { host } = makeHost({ pipeline: examplePipeline, keys, conn: v.conn, redis: v.redis });
    await host.run();
    try {
      const good = await startBatch(env, [{ text: "one two three" }, { text: "four five" }]);
      const bad = await startBatch(env, [{ not: "text" }]); // invalid payload: dead-lettered at once
      await eventually(async () => {
        const { body } = await getJson(exampleApp, "/v1/runs?limit=100", env);
        return body.items.filter((r: any) => r.status !== "running").length === 3;
      });
      const completed = (await getJson(exampleApp, "/v1/runs?status=completed", env)).body;
      expect(completed.items.map((r: any) => r.runId).sort()).toEqual([...good].sort());
      for (const r of completed.items) expect(r.step).toBe("wordcount");
      const dead = (await getJson(exampleApp, "/v1/runs?status=dead-lettered", env)).body;
      expect(dead.items.map((r: any) => [r.runId, r.step])).toEqual([[bad[0], "normalize"]]);
      expect((await getJson(exampleApp, "/v1/runs?status=skipped", env)).body).toMatchObject({ items: [], truncated: false });
    } finally {
      await host.close();
    }
  });

  it("keeps each partition's index bounded (RECENT_RUNS_MAX) and skips runs whose checkpoint expired", async () => {
    const env = envFor({ PARTITIONS: "2", RECENT_RUNS_MAX: "10" });
    const { keys } = settingsFor(env);
    const batchOf = new Map<string, number>();
    for (let b = 0; b < 4; b++) {
      for (const id of await startBatch(env, Array.from({ length: 15 }, (_, i) => ({ text: `r${b}-${i}` })))) batchOf.set(id, b);
      await sleep(3);
    }
    for (const p of keys.allPartitions) expect(await v.conn.zcard(keys.recentRuns(p))).toBeLessThanOrEqual(10);
    const listed = (await getJson(exampleApp, "/v1/runs?limit=100", env)).body.items.map((r: any) => r.runId);
    expect(listed.length).toBeGreaterThan(0);
    expect(listed.length).toBeLessThanOrEqual(20);
    // What is kept is the newest of each partition: no dropped run is from a later batch than a kept one.
    for (const p of keys.allPartitions) {
      const mine = [...batchOf.keys()].filter((id) => keys.partitionOf(id) === p);
      const kept = listed.filter((id: string) => keys.partitionOf(id) === p);
      expect(kept).toHaveLength(Math.min(10, mine.length));
      const oldestKept = Math.min(...kept.map((id: string) => batchOf.get(id)!));
      for (const id of mine.filter((id) => !kept.includes(id))) expect(batchOf.get(id)).toBeLessThanOrEqual(oldestKept);
    }
    // A checkpoint that expired (deleted here) drops out of the list.
    await v.conn.del(keys.run(listed[0]));
    const after = (await getJson(exampleApp, "/v1/runs?limit=100", env)).body.items.map((r: any) => r.runId);
    expect(after).not.toContain(listed[0]);
    expect(after).toHaveLength(listed.length - 1);
  });

  it("stops a status filter at the scan bound and says so (truncated)", async () => {
    const env = envFor();
    const { keys } = settingsFor(env);
    const pipeline = examplePipeline;
    const n = RECENT_RUNS_SCAN + 50;
    for (let i = 0; i < n; i += 500) await startRuns(v.redis, Array.from({ length: Math.min(500, n - i) }, () => ({ text: "x" })), { keys, pipeline });
    const body = (await getJson(exampleApp, "/v1/runs?status=completed&limit=5", env)).body;
    expect(body).toMatchObject({ items: [], examined: RECENT_RUNS_SCAN, truncated: true });
    const running = (await getJson(exampleApp, "/v1/runs?status=running&limit=5", env)).body;
    expect(running).toMatchObject({ examined: 5, truncated: false });
    expect(running.items).toHaveLength(5);
  });

  it("works over the REST bridge with @upstash/redis (the Workers transport), run ids kept as strings", async () => {
    let bridge: RestBridge | undefined;
    try {
      bridge = await startRestBridge({ conn: v.connect(), token: randomHex(16) });
      const env = envFor({ REDIS: undefined, UPSTASH_REDIS_REST_URL: bridge.url, UPSTASH_REDIS_REST_TOKEN: bridge.token, PARTITIONS: "2" });
      const { keys } = settingsFor(env);
      // Ids that look like numbers or JSON must come back as the same strings.
      const runIds = ["12345", "1e3", "007", "true"];
      await startRuns(v.redis, runIds.map((text) => ({ text })), { keys, pipeline: examplePipeline, runIds });
      const { status, body } = await getJson(exampleApp, "/v1/runs", env);
      expect(status).toBe(200);
      expect(body.items.map((r: any) => r.runId).sort()).toEqual([...runIds].sort());
      for (const r of body.items) expect(r).toMatchObject({ status: "running", step: "normalize" });
      expect(typeof body.items[0].createdAt).toBe("number");
    } finally {
      await bridge?.close();
    }
  });

  it("answers 400 with issues for a bad limit or status", async () => {
    const env = envFor();
    for (const [query, path] of [
      ["limit=0", "limit"],
      ["limit=101", "limit"],
      ["limit=ten", "limit"],
      ["status=done", "status"],
    ]) {
      const { status, body } = await getJson(exampleApp, `/v1/runs?${query}`, env);
      expect(status, query).toBe(400);
      expect(body.error.code).toBe("validation_failed");
      expect(body.error.issues.map((i: any) => i.path)).toEqual([path]);
    }
  });
});

describe("GET /v1/pipeline", () => {
  it("describes any pipeline: stages with their next stages, no apps by default", async () => {
    const { status, body } = await getJson(exampleApp, "/v1/pipeline", envFor());
    expect(status).toBe(200);
    expect(body).toEqual({ name: "example", entry: "normalize", stages: [{ name: "normalize", next: ["wordcount"] }, { name: "wordcount", next: [] }], apps: [] });
  });

  it("names the news app and its trigger step when the news app is mounted", async () => {
    const { body } = await getJson(newsApp, "/v1/pipeline", envFor());
    expect(body).toMatchObject({ name: "news", entry: "fetcher", triggerStep: "ingest", apps: ["news"] });
    expect(body.stages.map((s: any) => s.name)).toEqual(["fetcher", "classifier", "enricher", "fanout"]);
    expect(body.stages[0].next).toEqual(["classifier"]);
  });
});

describe("GET /v1/demo-users (news app)", () => {
  it("counts the seeded demo users and lists the first ones with their interests", async () => {
    const env = envFor();
    const { keys } = settingsFor(env);
    expect((await getJson(newsApp, "/v1/demo-users", env)).body).toEqual({ total: 0, lastUid: null, users: [] });
    await seedDemoUsers(v.redis, keys, 37);
    const { body } = await getJson(newsApp, "/v1/demo-users?limit=5", env);
    expect(body).toMatchObject({ total: 37, lastUid: "u0037" });
    expect(body.users.map((u: any) => u.uid)).toEqual(["u0001", "u0002", "u0003", "u0004", "u0005"]);
    for (const u of body.users) expect(u.interests.length).toBeGreaterThanOrEqual(2);
    expect((await getJson(newsApp, "/v1/demo-users?limit=51", env)).status).toBe(400);
  });

  it("is not part of a pipeline without the news app", async () => {
    expect((await getJson(exampleApp, "/v1/demo-users", envFor())).status).toBe(404);
  });
});
