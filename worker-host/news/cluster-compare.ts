/**
 * The news replay on one server and on a cluster, compared: the same
 * articles and users through the real runtime on each store, then per
 * article the run's outcome (status, topic), per user the feed (as the set of
 * articles it holds: feed ids and their order depend on processing order),
 * and GET /v1/topics. On the cluster it also measures the load per master
 * (commands processed, from INFO commandstats, and keys). With `edge`, the
 * run goes through the edge stack instead (handlers and API in workerd from
 * the built bundle, @upstash/redis over the REST bridge). Used by
 * tests/cluster-replay.test.ts (reduced) and `npm run measure:cluster`.
 */
import type { Cluster } from "iovalkey";
import { settingsFor } from "../../functions/config";
import { randomHex } from "../../functions/envelope";
import { NewsSettings } from "../../functions/news/config";
import { app, pipeline } from "../../functions/news/index";
import type { ArticleInput } from "../../functions/news/schema";
import { seedDemoUsers } from "../../functions/news/users";
import { loadConfig } from "../config";
import { startRuntime, type Runtime } from "../runtime";
import { startHttpModeStack } from "../http-mode";
import { asCluster, execMany, type Connection } from "../valkey";
import { deliveredArticles, waitForRuns } from "./news-check";

export interface ReplayResult {
  /** Per article, in input order: `status topic` (topic empty when the run did not classify). */
  outcomes: string[];
  /** Per user: the indexes of the articles in the feed, sorted. */
  feeds: Record<string, number[]>;
  topics: Array<{ name: string; subscribers: number; articles: number }>;
  /** From the first POST until every run finished. */
  seconds: number;
}

export interface MasterLoad {
  node: string;
  /** Commands processed during the replay (INFO commandstats, summed over commands). */
  commands: number;
  keys: number;
}

/** Sum of `calls=` over INFO commandstats. */
export function commandsProcessed(info: string): number {
  let total = 0;
  for (const m of info.matchAll(/^cmdstat_[^:]+:calls=(\d+)/gm)) total += Number(m[1]);
  return total;
}

/** Largest distance from the mean, as a fraction of it. */
export function spreadFromMean(values: number[]): number {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return mean === 0 ? 0 : Math.max(...values.map((v) => Math.abs(v - mean) / mean));
}

async function post(url: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

/** What a replay runs on: the in-process runtime, or the edge stack (workerd over the REST bridge). */
export type ReplayTarget = Pick<Runtime, "url" | "env" | "conn" | "close">;

/** Posts the articles in chunks (waiting out 429 backpressure), returns the run ids in order. */
async function ingest(rt: ReplayTarget, articles: ArticleInput[], chunk = 200): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < articles.length; ) {
    const res = await post(`${rt.url}/v1/articles`, { articles: articles.slice(i, i + chunk) });
    if (res.status === 429) {
      await new Promise((r) => setTimeout(r, 200));
      continue;
    }
    if (res.status !== 202) throw new Error(`POST /v1/articles answered ${res.status}: ${JSON.stringify(res.body)}`);
    ids.push(...res.body.runIds);
    i += chunk;
  }
  return ids;
}

/** Runs the replay on the store `vars` name (VALKEY_URL or VALKEY_CLUSTER_NODES) and reads the end state. */
export async function replayOn(
  vars: Record<string, string>,
  articles: ArticleInput[],
  users: number,
  { timeoutMs = 600_000, log = () => {}, edge }: { timeoutMs?: number; log?: (line: string) => void; edge?: { scriptPath: string } } = {},
): Promise<ReplayResult & { runtime: ReplayTarget }> {
  const config = loadConfig({ PORT: "0", DEMO: "off", KEY_PREFIX: `r${randomHex(3)}`, FEED_CAP: "100000", BLOCK_MS: "200", ...(edge ? { UPSTASH_REDIS_REST_URL: "http://127.0.0.1:0" } : {}), ...vars }, { appSettings: NewsSettings });
  const rt: ReplayTarget = edge ? await startHttpModeStack({ config, pipeline, workerd: { kind: "miniflare", scriptPath: edge.scriptPath }, log }) : await startRuntime({ config, pipeline, app, log });
  try {
    const keys = settingsFor(rt.env).keys;
    const profiles = await seedDemoUsers(rt.env.REDIS!, keys, users);
    const started = Date.now();
    const runIds = await ingest(rt, articles);
    const statuses = await waitForRuns(rt.conn, keys, runIds, { timeoutMs });
    const seconds = (Date.now() - started) / 1000;
    const delivered = await deliveredArticles(rt.conn, keys, runIds);
    const index = new Map(runIds.map((id, i) => [id, i]));
    const byFeedId = new Map(delivered.map((d) => [d.feedId, index.get(d.runId)!]));
    const topicOf = new Map(delivered.map((d) => [d.runId, d.topic]));
    const outcomes = runIds.map((id, i) => `${statuses[i]} ${topicOf.get(id) ?? ""}`);
    const replies = await execMany(rt.conn, profiles.map((u) => ["lrange", keys.feed(u.uid), 0, -1]));
    const feeds: Record<string, number[]> = {};
    profiles.forEach((u, i) => {
      const ids = (replies[i][1] as string[] | null) ?? [];
      feeds[u.uid] = ids.map((f) => byFeedId.get(f) ?? -1).sort((a, b) => a - b);
    });
    const topics = ((await (await fetch(`${rt.url}/v1/topics`)).json()) as ReplayResult).topics.sort((a, b) => a.name.localeCompare(b.name));
    return { outcomes, feeds, topics, seconds, runtime: rt };
  } catch (err) {
    await rt.close();
    throw err;
  }
}

/** Per master: commands processed since `before` (from commandsOnMasters) and keys now. */
export async function commandsOnMasters(conn: Connection): Promise<Map<string, number>> {
  const cluster: Cluster = asCluster(conn);
  const out = new Map<string, number>();
  for (const node of cluster.nodes("master")) out.set(`${node.options.host}:${node.options.port}`, commandsProcessed(String(await node.info("commandstats"))));
  return out;
}

export async function loadPerMaster(conn: Connection, before: Map<string, number>): Promise<MasterLoad[]> {
  const cluster: Cluster = asCluster(conn);
  const now = await commandsOnMasters(conn);
  const out: MasterLoad[] = [];
  for (const node of cluster.nodes("master")) {
    const at = `${node.options.host}:${node.options.port}`;
    out.push({ node: at, commands: (now.get(at) ?? 0) - (before.get(at) ?? 0), keys: Number(await node.dbsize()) });
  }
  return out;
}

/** Lines that differ between two results (empty when they agree), at most `max`. */
export function differences(a: ReplayResult, b: ReplayResult, max = 10): string[] {
  const out: string[] = [];
  for (let i = 0; i < Math.max(a.outcomes.length, b.outcomes.length) && out.length < max; i++) {
    if (a.outcomes[i] !== b.outcomes[i]) out.push(`article ${i}: "${a.outcomes[i]}" vs "${b.outcomes[i]}"`);
  }
  for (const uid of new Set([...Object.keys(a.feeds), ...Object.keys(b.feeds)])) {
    if (out.length >= max) break;
    if (JSON.stringify(a.feeds[uid]) !== JSON.stringify(b.feeds[uid])) out.push(`feed of ${uid}: ${a.feeds[uid]?.length ?? 0} vs ${b.feeds[uid]?.length ?? 0} articles`);
  }
  if (JSON.stringify(a.topics) !== JSON.stringify(b.topics)) out.push(`topics: ${JSON.stringify(a.topics)} vs ${JSON.stringify(b.topics)}`);
  return out;
}
