/**
 * The news replay gives the same results on one server and on a 3-master
 * cluster (reduced: 600 AG News articles, 100 users; `npm run
 * measure:cluster` runs the long one): every article's outcome and topic,
 * every user's feed (the set of articles in it) and GET /v1/topics agree.
 * On the cluster every master carries a share of the commands and keys
 * (printed; the ±25% figure is reported by measure:cluster, with more data).
 */
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { articlesFromCsv } from "../functions/news/csv";
import { generateDemoArticles } from "../functions/news/demo-feed";
import type { ArticleInput } from "../functions/news/schema";
import { commandsOnMasters, differences, loadPerMaster, replayOn, spreadFromMean, type MasterLoad, type ReplayResult, type ReplayTarget } from "../worker-host/news/cluster-compare";
import { startTestCluster, type TestCluster } from "./helpers/cluster";
import { startTestValkey, type TestValkey } from "./helpers/valkey";

const AG_NEWS = process.env.AG_NEWS_CSV ?? fileURLToPath(new URL("../../shared/data/ag_news_test.csv", import.meta.url));
const ITEMS = 600;
const USERS = 100;

function loadArticles(): ArticleInput[] {
  if (existsSync(AG_NEWS)) return articlesFromCsv(readFileSync(AG_NEWS, "utf8")).slice(0, ITEMS).map((r) => ({ title: r.title, body: r.body, source: "ag_news" }));
  console.warn(`[cluster-replay] ${AG_NEWS} is absent: using the project's own demo generator`);
  // Without their ids: an article id names its run, so a copy with the id would be the same run, not a duplicate.
  return generateDemoArticles(ITEMS, { seed: 5 }).map(({ intendedTopic: _t, id: _id, ...a }) => a);
}

let v: TestValkey;
let t: TestCluster;
const runtimes: ReplayTarget[] = [];
let single: ReplayResult;
let clustered: ReplayResult;
let load: MasterLoad[];

beforeAll(async () => {
  [v, t] = await Promise.all([startTestValkey(), startTestCluster({ masters: 3 })]);
  const articles = loadArticles();
  // A few exact duplicates: skipped on both.
  const input = [...articles, ...articles.slice(0, 4).map((a) => ({ ...a }))];
  const one = await replayOn({ VALKEY_URL: v.url }, input, USERS, { timeoutMs: 90_000 });
  runtimes.push(one.runtime);
  single = one;
  await one.runtime.close();
  const before = await commandsOnMasters(t.client as never);
  const many = await replayOn({ VALKEY_CLUSTER_NODES: t.cluster.seedList }, input, USERS, { timeoutMs: 90_000 });
  runtimes.push(many.runtime);
  clustered = many;
  load = await loadPerMaster(t.client as never, before);
}, 240_000);

afterAll(async () => {
  await Promise.allSettled(runtimes.map((r) => r.close()));
  await Promise.allSettled([v?.stop(), t?.stop()]);
});

describe("news replay: one server vs a 3-master cluster", () => {
  it("finishes every run on both, with some completed and the duplicates skipped", () => {
    expect(clustered.outcomes.length).toBe(ITEMS + 4);
    expect(clustered.outcomes.filter((o) => !/^(completed \S+|skipped )$/.test(o))).toEqual([]);
    expect(clustered.outcomes.slice(ITEMS)).toEqual(["skipped ", "skipped ", "skipped ", "skipped "]);
  });

  it("gives identical run outcomes, feeds and topics", () => {
    expect(differences(single, clustered)).toEqual([]);
    expect(Object.values(clustered.feeds).reduce((n, f) => n + f.length, 0)).toBeGreaterThan(0);
    console.log(`[cluster-replay] ${ITEMS + 4} articles, ${USERS} users: identical outcomes, feeds and topics; ${single.seconds.toFixed(1)} s on one server, ${clustered.seconds.toFixed(1)} s on 3 masters`);
  });

  it("spreads commands and keys over every master", () => {
    const line = load.map((m) => `${m.node} ${m.commands} commands ${m.keys} keys`).join("; ");
    console.log(`[cluster-replay] load per master: ${line}; spread from the mean: commands ${(spreadFromMean(load.map((m) => m.commands)) * 100).toFixed(0)}%, keys ${(spreadFromMean(load.map((m) => m.keys)) * 100).toFixed(0)}%`);
    expect(load.length).toBe(3);
    expect(load.every((m) => m.commands > 0 && m.keys > 0)).toBe(true);
    // Keys follow the spread tags (4/4/4 partitions, 8/8/8 buckets): each master holds a real share.
    expect(spreadFromMean(load.map((m) => m.keys))).toBeLessThan(0.5);
  });
});
