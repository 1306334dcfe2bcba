/**
 * End to end through the real runtime (embedded HTTP app + worker-host with
 * in-process handlers + a real server): a few hundred real AG News items
 * (or the project's own demo generator when ../shared/data is absent) with
 * 100 demo users. Every feed must hold exactly the articles of the topics its
 * user follows, a replay adds nothing, runs show all five steps, stats add up.
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFanoutDeliveries } from "../functions/stats";
import { randomHex } from "../functions/envelope";
import { app, pipeline } from "../functions/news/index";
import { settingsFor } from "../functions/config";
import { articlesFromCsv } from "../functions/news/csv";
import { generateDemoArticles } from "../functions/news/demo-feed";
import { seedDemoUsers, type UserProfile } from "../functions/news/users";
import type { ArticleInput } from "../functions/news/schema";
import type { Keys } from "../functions/keys";
import { loadConfig } from "../worker-host/config";
import { startRuntime, type Runtime } from "../worker-host/runtime";
import { checkFeeds, deliveredArticles, waitForRuns } from "../worker-host/news/news-check";
import { startTestValkey, type TestValkey } from "./helpers/valkey";
import { NewsSettings } from "../functions/news/config";

// AG_NEWS_CSV=/nonexistent exercises the fallback path.
const AG_NEWS = process.env.AG_NEWS_CSV ?? fileURLToPath(new URL("../../shared/data/ag_news_test.csv", import.meta.url));
const ITEMS = 300;
const USERS = 100;

function loadArticles(): { source: string; articles: ArticleInput[] } {
  if (existsSync(AG_NEWS)) {
    const rows = articlesFromCsv(readFileSync(AG_NEWS, "utf8")).slice(0, ITEMS);
    return { source: "AG News (../shared/data/ag_news_test.csv)", articles: rows.map((r) => ({ title: r.title, body: r.body, source: "ag_news" })) };
  }
  console.warn(`[news-e2e] ${AG_NEWS} is absent: using the project's own demo generator instead of real AG News items`);
  return { source: "demo generator", articles: generateDemoArticles(ITEMS, { seed: 7 }).map(({ intendedTopic: _t, ...a }) => a) };
}

let v: TestValkey;
let rt: Runtime;
let keys: Keys;
let users: UserProfile[];
const data = loadArticles();
// Five exact duplicates ride along in the first batch, without their ids (an id would
// name the run it started): the fetcher's content dedupe must drop them.
const firstBatch = [...data.articles, ...data.articles.slice(0, 5).map(({ id: _id, ...a }) => ({ ...a }))];
let runIds: string[] = [];
let statuses: string[] = [];

async function post(path: string, body: unknown) {
  const res = await fetch(`${rt.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as any };
}

async function ingestAll(articles: ArticleInput[]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < articles.length; i += 200) {
    const res = await post("/v1/articles", { articles: articles.slice(i, i + 200) });
    expect(res.status).toBe(202);
    ids.push(...res.body.runIds);
  }
  return ids;
}

beforeAll(async () => {
  v = await startTestValkey();
  const config = loadConfig({ VALKEY_URL: v.url, PORT: "0", KEY_PREFIX: `e${randomHex(4)}`, DEMO: "off", FEED_CAP: "100000", BLOCK_MS: "100", CONCURRENCY: "2" }, { appSettings: NewsSettings });
  rt = await startRuntime({ config, pipeline, app, log: () => {} });
  keys = settingsFor(rt.env).keys;
  users = await seedDemoUsers(rt.env.REDIS!, keys, USERS);
  runIds = await ingestAll(firstBatch);
  statuses = await waitForRuns(rt.conn, keys, runIds, { timeoutMs: 50_000 });
}, 60_000);

afterAll(async () => {
  await rt?.close();
  await v?.stop();
});

describe(`news pipeline end to end (${ITEMS} items)`, () => {
  it("finishes every run: completed, or skipped as an exact duplicate", () => {
    console.log(`[news-e2e] data: ${data.source}; ${firstBatch.length} articles, ${USERS} users`);
    expect(statuses.filter((s) => s !== "completed" && s !== "skipped")).toEqual([]);
    // The five appended copies are duplicates; the source data may hold a few more of its own.
    expect(statuses.slice(ITEMS)).toEqual(["skipped", "skipped", "skipped", "skipped", "skipped"]);
  });

  it("puts exactly the followed topics' articles in every feed, no duplicates, nothing missing", async () => {
    const delivered = await deliveredArticles(rt.conn, keys, runIds);
    expect(delivered.length).toBe(statuses.filter((s) => s === "completed").length);
    expect(new Set(delivered.map((d) => d.feedId)).size).toBe(delivered.length);
    const check = await checkFeeds(rt.conn, keys, users, delivered, { feedCap: 100_000 });
    expect(check.problems).toEqual([]);
    expect(check.exact).toBe(USERS);
    expect(check.feedEntries).toBe(check.expectedDeliveries);
    expect(check.expectedDeliveries).toBeGreaterThan(0);
  });

  it("serves the feed newest first through GET /v1/feeds/:uid with a cursor", async () => {
    const uid = users[0].uid;
    const raw = await rt.conn.lrange(keys.feed(uid), 0, -1);
    const seen: any[] = [];
    let cursor: string | null = null;
    do {
      const res = await fetch(`${rt.url}/v1/feeds/${uid}?limit=7${cursor ? `&cursor=${cursor}` : ""}`);
      expect(res.status).toBe(200);
      const page = (await res.json()) as { items: any[]; nextCursor: string | null };
      seen.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen.map((i) => i.id)).toEqual(raw);
    for (const item of seen) {
      expect(users[0].interests).toContain(item.topic);
      expect(item).toMatchObject({ runId: expect.any(String), title: expect.any(String), summary: expect.any(String), keywords: expect.any(Array) });
      expect(item.summary.length).toBeLessThanOrEqual(280);
    }
  });

  it("shows all five steps of a finished run, and the skip of a duplicate in its log", async () => {
    const done = runIds[statuses.indexOf("completed")];
    const run = (await (await fetch(`${rt.url}/v1/runs/${done}`)).json()) as any;
    expect(run.status).toBe("completed");
    expect(run.steps.map((s: any) => s.stage)).toEqual(["ingest", "fetcher", "classifier", "enricher", "fanout"]);
    expect(run.steps.every((s: any) => s.status === "completed")).toBe(true);
    expect(run.log.map((l: any) => l.event)).toEqual(["enqueued", "completed", "completed", "completed", "completed"]);
    const dup = (await (await fetch(`${rt.url}/v1/runs/${runIds[ITEMS]}`)).json()) as any;
    expect(dup.status).toBe("skipped");
    expect(dup.steps.map((s: any) => [s.stage, s.status])).toEqual([["ingest", "completed"], ["fetcher", "skipped"]]);
    expect(dup.steps[1].result).toMatchObject({ skipped: expect.stringMatching(/duplicate/) });
    expect(dup.log.at(-1)).toMatchObject({ stage: "fetcher", event: "skipped" });
  });

  it("counts in GET /v1/stats and GET /v1/topics match what was ingested and delivered", async () => {
    const delivered = await deliveredArticles(rt.conn, keys, runIds);
    const check = await checkFeeds(rt.conn, keys, users, delivered, { feedCap: 100_000 });
    const stats = (await (await fetch(`${rt.url}/v1/stats`)).json()) as any;
    const stage = (name: string) => stats.stages.find((s: any) => s.name === name);
    expect(stage("fetcher").ingested).toBe(firstBatch.length);
    expect(stage("fetcher").processed).toBe(firstBatch.length);
    for (const name of ["classifier", "enricher", "fanout"]) expect(stage(name).processed).toBe(delivered.length);
    expect(stats.fanout.deliveries).toBe(check.expectedDeliveries);
    const topics = (await (await fetch(`${rt.url}/v1/topics`)).json()) as any;
    expect(topics.topics.reduce((s: number, t: any) => s + t.articles, 0)).toBe(delivered.length);
    expect(topics.topics.reduce((s: number, t: any) => s + t.subscribers, 0)).toBe(users.reduce((s, u) => s + u.interests.length, 0));
    const busiest = topics.topics.reduce((a: any, b: any) => (b.articles > a.articles ? b : a));
    const list = (await (await fetch(`${rt.url}/v1/topics/${busiest.name}?limit=5`)).json()) as any;
    expect(list.items).toHaveLength(Math.min(5, busiest.articles));
    expect(list.items.every((i: any) => i.topic === busiest.name)).toBe(true);
  });

  it("adds nothing when the same items are replayed (dedupe)", async () => {
    const before = await Promise.all(users.map((u) => rt.conn.lrange(keys.feed(u.uid), 0, -1)));
    const deliveriesBefore = await readFanoutDeliveries(rt.env.REDIS!, keys);
    expect(deliveriesBefore).toBeGreaterThan(0);
    const again = await ingestAll(data.articles);
    // Articles with an id answer the runs they started (nothing new runs); those without one are new runs the dedupe skips.
    const withId = data.articles.map((a, i) => (a.id !== undefined ? i : -1)).filter((i) => i >= 0);
    expect(withId.map((i) => again[i])).toEqual(withId.map((i) => runIds[i]));
    const fresh = again.filter((_, i) => data.articles[i].id === undefined);
    const second = await waitForRuns(rt.conn, keys, fresh, { timeoutMs: 30_000 });
    expect(second.filter((s) => s !== "skipped")).toEqual([]);
    const after = await Promise.all(users.map((u) => rt.conn.lrange(keys.feed(u.uid), 0, -1)));
    expect(after).toEqual(before);
    expect(await readFanoutDeliveries(rt.env.REDIS!, keys)).toBe(deliveriesBefore);
  });
});
