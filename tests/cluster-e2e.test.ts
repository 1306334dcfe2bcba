/**
 * The news pipeline on a real 3-master cluster through the real runtime
 * (VALKEY_CLUSTER_NODES): every partition read by exactly one blocking
 * connection per stage, on the master that owns it; every feed exact; runs,
 * stats, topics and the feed API answer as on one server; a VALKEY_URL that
 * names a cluster node is detected (INFO cluster) and runs in cluster mode.
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { settingsFor } from "../functions/config";
import { randomHex } from "../functions/envelope";
import { keySlot } from "../functions/key-slot";
import type { Keys } from "../functions/keys";
import { NewsSettings } from "../functions/news/config";
import { articlesFromCsv } from "../functions/news/csv";
import { generateDemoArticles } from "../functions/news/demo-feed";
import { app, pipeline } from "../functions/news/index";
import type { ArticleInput } from "../functions/news/schema";
import { seedDemoUsers, type UserProfile } from "../functions/news/users";
import { loadConfig } from "../worker-host/config";
import { checkFeeds, deliveredArticles, waitForRuns } from "../worker-host/news/news-check";
import { startRuntime, type Runtime } from "../worker-host/runtime";
import { replayCommand } from "../worker-host/news/replay";
import { startTestCluster, type TestCluster } from "./helpers/cluster";

const AG_NEWS = process.env.AG_NEWS_CSV ?? fileURLToPath(new URL("../../shared/data/ag_news_test.csv", import.meta.url));
const ITEMS = 300;
const USERS = 100;

function loadArticles(): ArticleInput[] {
  if (existsSync(AG_NEWS)) return articlesFromCsv(readFileSync(AG_NEWS, "utf8")).slice(0, ITEMS).map((r) => ({ title: r.title, body: r.body, source: "ag_news" }));
  console.warn(`[cluster-e2e] ${AG_NEWS} is absent: using the project's own demo generator`);
  // Without their ids: an article id names its run, so a copy with the id would be the same run, not a duplicate.
  return generateDemoArticles(ITEMS, { seed: 7 }).map(({ intendedTopic: _t, id: _id, ...a }) => a);
}

let t: TestCluster;
let rt: Runtime;
let keys: Keys;
let users: UserProfile[];
let runIds: string[] = [];
let statuses: string[] = [];
const logs: string[] = [];

async function post(path: string, body: unknown) {
  const res = await fetch(`${rt.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as any };
}

beforeAll(async () => {
  t = await startTestCluster({ masters: 3 });
  const config = loadConfig({ VALKEY_CLUSTER_NODES: t.cluster.seedList, PORT: "0", KEY_PREFIX: `c${randomHex(4)}`, DEMO: "off", FEED_CAP: "100000", BLOCK_MS: "200" }, { appSettings: NewsSettings });
  rt = await startRuntime({ config, pipeline, app, log: (l) => logs.push(l) });
  keys = settingsFor(rt.env).keys;
  users = await seedDemoUsers(rt.env.REDIS!, keys, USERS);
  const articles = loadArticles();
  const batch = [...articles, ...articles.slice(0, 3).map((a) => ({ ...a }))];
  for (let i = 0; i < batch.length; i += 150) {
    const res = await post("/v1/articles", { articles: batch.slice(i, i + 150) });
    expect(res.status).toBe(202);
    runIds.push(...res.body.runIds);
  }
  statuses = await waitForRuns(rt.conn, keys, runIds, { timeoutMs: 80_000 });
}, 120_000);

afterAll(async () => {
  await rt?.close();
  await t?.stop();
});

describe("the news pipeline on a 3-master cluster", () => {
  it("starts in cluster mode with the spreading defaults (12 partitions, 24 feed buckets)", () => {
    expect(rt.mode).toBe("cluster");
    expect(keys.partitions).toBe(12);
    expect(keys.allBuckets.length).toBe(24);
    expect(logs.some((l) => /cluster mode: 3 masters, 12 partitions, 24 feed buckets/.test(l))).toBe(true);
  });

  it("reads every partition of every stage with exactly one blocking connection, on the master that owns it", async () => {
    const seen = new Map<string, string[]>();
    for (const node of t.client.nodes("master")) {
      const list = String(await node.client("LIST"));
      const at = `${node.options.host}:${node.options.port}`;
      for (const m of list.matchAll(/name=(\S+):block:p(\d+) /g)) {
        const [, consumerAndStage, p] = m;
        const stage = consumerAndStage.split(":").at(-1)!;
        const key = `${stage}/${p}`;
        seen.set(key, [...(seen.get(key) ?? []), at]);
        // The reader sits on the owner of its partition's slot.
        expect(t.client.slots[keySlot(keys.stream(stage, Number(p)))][0]).toBe(at);
      }
    }
    const expected = [...pipeline.stages.keys()].flatMap((s) => keys.allPartitions.map((p) => `${s}/${p}`)).sort();
    expect([...seen.keys()].sort()).toEqual(expected);
    expect([...seen.values()].filter((nodes) => nodes.length !== 1)).toEqual([]);
  });

  it("finishes every run: completed, or skipped as an exact duplicate", () => {
    expect(statuses.filter((s) => s !== "completed" && s !== "skipped")).toEqual([]);
    // Of each article and its copy exactly one runs and the other is skipped; which one is the race of
    // 12 partitions read side by side (on one server's single partition it is always the copy).
    expect([0, 1, 2].map((i) => [statuses[i], statuses[ITEMS + i]].sort())).toEqual(Array.from({ length: 3 }, () => ["completed", "skipped"]));
  });

  it("puts exactly the followed topics' articles in every feed", async () => {
    const delivered = await deliveredArticles(rt.conn, keys, runIds);
    expect(delivered.length).toBe(statuses.filter((s) => s === "completed").length);
    const check = await checkFeeds(rt.conn, keys, users, delivered, { feedCap: 100_000 });
    expect(check.problems).toEqual([]);
    expect(check.exact).toBe(USERS);
    expect(check.expectedDeliveries).toBeGreaterThan(0);
  });

  it("serves runs, feeds, topics and stats through the API", async () => {
    const done = runIds[statuses.indexOf("completed")];
    const run = (await (await fetch(`${rt.url}/v1/runs/${done}`)).json()) as any;
    expect(run.steps.map((s: any) => s.stage)).toEqual(["ingest", "fetcher", "classifier", "enricher", "fanout"]);
    const uid = users[0].uid;
    const feed = (await (await fetch(`${rt.url}/v1/feeds/${uid}?limit=100`)).json()) as any;
    expect(feed.items.length).toBeGreaterThan(0);
    for (const item of feed.items) expect(users[0].interests).toContain(item.topic);
    const topics = (await (await fetch(`${rt.url}/v1/topics`)).json()) as any;
    expect(topics.topics.reduce((n: number, x: any) => n + x.articles, 0)).toBe(statuses.filter((s) => s === "completed").length);
    const stats = (await (await fetch(`${rt.url}/v1/stats`)).json()) as any;
    const fetcher = stats.stages.find((s: any) => s.name === "fetcher");
    expect(fetcher.processed).toBe(runIds.length);
    expect(stats.fanout.deliveries).toBeGreaterThan(0);
    const health = await fetch(`${rt.url}/health`);
    expect(health.status).toBe(200);
  });

  it("spreads the work over every master", async () => {
    const perMaster = await Promise.all(t.client.nodes("master").map((n) => n.dbsize()));
    expect(perMaster.every((n) => n > 0)).toBe(true);
    console.log(`[cluster-e2e] keys per master: ${perMaster.join(" / ")}`);
  });

  it("a VALKEY_URL naming a cluster node is detected and runs in cluster mode", async () => {
    const config = loadConfig({ VALKEY_URL: `redis://${t.cluster.seedList.split(",")[1]}`, PORT: "0", KEY_PREFIX: `d${randomHex(4)}`, DEMO: "off" }, { appSettings: NewsSettings });
    const lines: string[] = [];
    const other = await startRuntime({ config, pipeline, app, log: (l) => lines.push(l) });
    try {
      expect(other.mode).toBe("cluster");
      expect(lines.some((l) => /cluster_enabled:1/.test(l))).toBe(true);
      const res = await fetch(`${other.url}/v1/articles`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ articles: [{ title: "Detected", body: "cluster mode from a node url" }] }) });
      expect(res.status).toBe(202);
      const ids = ((await res.json()) as any).runIds as string[];
      const k = settingsFor(other.env).keys;
      expect(await waitForRuns(other.conn, k, ids, { timeoutMs: 30_000 })).toEqual(["completed"]);
    } finally {
      await other.close();
    }
  });

  it("npm run replay -- --direct enqueues straight into the cluster (VALKEY_CLUSTER_NODES), on the app's partitions: every run completes", async () => {
    const before = await Promise.all(keys.allPartitions.map((p) => t.client.xlen(keys.stream(pipeline.entry, p))));
    const config = loadConfig({ VALKEY_CLUSTER_NODES: t.cluster.seedList, KEY_PREFIX: keys.prefix, DEMO: "off" }, { appSettings: NewsSettings });
    const report = await replayCommand(["worker-host/news/sample-articles.jsonl", "--direct", "--limit", "30", "--quiet"], config);
    expect(report.sent).toBe(30);
    const after = await Promise.all(keys.allPartitions.map((p) => t.client.xlen(keys.stream(pipeline.entry, p))));
    // Spread over the app's 12 partitions (entries on several of them), 30 new entries in all.
    expect(after.reduce((n, x) => n + x, 0) - before.reduce((n, x) => n + x, 0)).toBe(30);
    expect(after.filter((n, i) => n > before[i]).length).toBeGreaterThan(3);
    const done = await waitForRuns(rt.conn, keys, report.runIds, { timeoutMs: 60_000 });
    expect(done.filter((s) => s !== "completed" && s !== "skipped")).toEqual([]);
    expect(done.filter((s) => s === "completed").length).toBeGreaterThan(20);
  });
});
