/**
 * Rows that measure other parts of the project: the news pipeline with its
 * real handlers (and the same handlers chained in BullMQ), our fan-out Lua
 * against the naive baseline, bytes per buffered feed entry, the tool cache,
 * and HTTP mode through workerd. A row whose part is missing or fails says
 * "not measured (reason)".
 */
import { lazyRunStream } from "../functions/run-stream";
import { newRunId, randomHex } from "../functions/envelope";
import { createKeys, type Keys } from "../functions/keys";
import type { StageDef } from "../functions/pipeline";
import type { RedisClient } from "../functions/redis";
import { app as newsApp, pipeline as newsPipeline } from "../functions/news/index";
import { fanOutArticle } from "../functions/news/fan-out";
import { seedDemoUsers } from "../functions/news/users";
import { extractKeywords, readingTimeMinutes, summarize } from "../functions/news/enrich";
import { cachedTool } from "../functions/tools/cache";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { settingsFor } from "../functions/config";
import { startRuns } from "../functions/runs";
import { readFanoutDeliveries } from "../functions/stats";
import { loadConfig } from "../worker-host/config";
import { startHttpModeStack } from "../worker-host/http-mode";
import { InProcessInvoker } from "../worker-host/invoker";
import { buildWorkerBundle } from "../worker-host/worker-bundle";
import { connectValkey, upstashOverValkey, type Connection } from "../worker-host/valkey";
import type { BenchArticle } from "./articles";
import { PipelineHarness, measureHostProcess, measureThroughput, naiveFanOut, pipelineIdle, round, runBullmqChain, seedNaiveSubscribers, usedMemory, type BenchServer, type ChainStep } from "./harness";
import { progress, quantiles, sampleRss } from "./stats";
import type { Series } from "./svg";
import { NewsSettings } from "../functions/news/config";

/** " [CPU/art: node X µs, server Y µs]" when measured. */
function fmtCpu(v: unknown): string {
  const c = (v as { cpuUsPerArticle?: { node: number; server: number } } | undefined)?.cpuUsPerArticle;
  return c ? ` [CPU/art: node ${c.node} µs, server ${c.server} µs]` : "";
}

type Row = { row: string; ours: string; baseline: string; ratio: string; target: string; verdict: string };
type NotMeasured = { notMeasured: string };

export interface ExtraRows {
  results: Record<string, unknown>;
  hasFanout: boolean;
  /** [pipeline name, measureHostProcess result or NotMeasured]. */
  hostProcessCandidates: Array<[string, unknown]>;
  pipelineRows(bullmqPassThrough: unknown): Row[];
  httpRows(passThrough: unknown): Row[];
  fanoutRows(naive: unknown): Row[];
  fanoutSeries(): Series[];
  memoryRows(): Row[];
  toolCacheRows(): Row[];
}

const isMeasured = <T>(v: T | NotMeasured | undefined): v is T => v !== undefined && !(typeof v === "object" && v !== null && "notMeasured" in v);
const missing = (row: string, reason: string, target = "-"): Row => ({ row, ours: `not measured (${reason})`, baseline: "-", ratio: "-", target, verdict: "-" });
const fmt = (n: number) => n.toLocaleString("en-US");

async function attempt<T>(what: string, fn: () => Promise<T>): Promise<T | NotMeasured> {
  try {
    return await fn();
  } catch (err) {
    progress(`${what} failed: ${(err as Error).stack ?? err}`);
    return { notMeasured: `${what} failed: ${(err as Error).message.split("\n")[0]}` };
  }
}

/** Article payloads as POST /v1/articles takes them. */
const articleInputs = (articles: BenchArticle[]) => articles.map(({ id, url, title, body, source, publishedAt }) => ({ id, url, title, body, source, publishedAt }));

// ------------------------------------------------------------------ news pipeline

async function newsInProcess(url: string, articles: BenchArticle[], users: number) {
  progress(`row 1a: news pipeline (ingest + fetcher, classifier, enricher, fanout), in-process, ${articles.length} articles, ${users} demo users`);
  // The news app (with its API routes) is what `npm start` dispatches to.
  const h = new PipelineHarness({ url, pipeline: newsPipeline, invoker: (env) => new InProcessInvoker(newsApp, env) });
  await seedDemoUsers(h.env.REDIS!, h.keys, users);
  await h.start();
  const rss = sampleRss();
  try {
    const r = await measureThroughput(h, articleInputs(articles), (d, t) => progress(`news in-process: ${d}/${t}`));
    const fanoutDeliveries = await readFanoutDeliveries(h.env.REDIS!, h.keys);
    return { ...r, users, fanoutDeliveries, peakRssMb: round(rss.stop() / 2 ** 20) };
  } finally {
    rss.stop();
    await h.close();
  }
}

/** The news stages as BullMQ steps: same handlers, same ctx shape, same Valkey. */
function newsChainSteps(redis: RedisClient, keys: Keys, env: Record<string, unknown>): ChainStep[] {
  const stages = [...newsPipeline.stages.values()] as StageDef[];
  return stages.map((stage) => async (job: { runId: string; payload: unknown }) => {
    const input = stage.input.parse(job.payload);
    const output = lazyRunStream(redis, keys, { runId: job.runId, stage: stage.name, attempt: 1 });
    const outcome = await stage.handle(input, { runId: job.runId, stage: stage.name, attempt: 1, traceId: randomHex(16), redis, keys, env, stream: output.stream, reportCost: () => {} });
    const next = outcome.emit?.[0];
    return next ? { runId: job.runId, payload: next.payload } : undefined;
  });
}

async function newsBullmq(url: string, articles: BenchArticle[], users: number) {
  progress(`row 2a: BullMQ chain of the same news handlers, ${articles.length} articles, ${users} demo users`);
  const conn = connectValkey(url, { name: "bench-bq-news" });
  try {
    const redis = upstashOverValkey(conn);
    const keys = createKeys({ prefix: `bqn${randomHex(3)}` });
    const env = { REDIS: redis, KEY_PREFIX: keys.prefix };
    await seedDemoUsers(redis, keys, users);
    const payloads = articleInputs(articles).map((payload) => ({ runId: newRunId(), payload }));
    return await runBullmqChain({ url, steps: newsChainSteps(redis, keys, env), payloads, concurrency: 50, onTick: (d, t) => progress(`bullmq news: ${d}/${t}`) });
  } finally {
    await conn.quit();
  }
}

// ------------------------------------------------------------------ fan-out

/** Puts `n` subscribers of `topic` straight into the bucketed subscriber sets (setup, untimed). */
async function seedSubscribers(conn: Connection, keys: Keys, topic: string, n: number): Promise<void> {
  const byBucket = new Map<number, string[]>();
  for (let i = 0; i < n; i++) {
    const uid = `s${i}`;
    const b = keys.bucketOf(uid);
    const list = byBucket.get(b) ?? [];
    list.push(uid);
    byBucket.set(b, list);
  }
  for (const [b, uids] of byBucket) {
    for (let i = 0; i < uids.length; i += 5000) await conn.sadd(keys.subscribers(topic, b), ...uids.slice(i, i + 5000));
  }
}

interface FanOutPoint {
  subscribers: number;
  articles: number;
  deliveries: number;
  seconds: number;
  perSecond: number;
}

async function ourFanOut(url: string, sizes: number[]): Promise<FanOutPoint[]> {
  const out: FanOutPoint[] = [];
  for (const n of sizes) {
    const conn = connectValkey(url, { name: "bench-fanout" });
    try {
      const keys = createKeys({ prefix: `fo${randomHex(3)}` });
      const redis = upstashOverValkey(conn);
      await seedSubscribers(conn, keys, "sports", n);
      // Several articles per size, so small sizes are not one round trip's worth of noise.
      const articles = Math.max(2, Math.min(50, Math.round(200_000 / n)));
      progress(`row 5: our fan-out Lua, ${articles} article(s) to ${fmt(n)} subscribers`);
      const started = performance.now();
      let deliveries = 0;
      for (let a = 1; a <= articles; a++) deliveries += (await fanOutArticle(redis, keys, a.toString(36), "sports", { feedCap: 500, markerTtlSeconds: 3600 })).delivered;
      const seconds = (performance.now() - started) / 1000;
      out.push({ subscribers: n, articles, deliveries, seconds: round(seconds, 4), perSecond: Math.round(deliveries / seconds) });
      progress(`  ours ${fmt(n)}: ${fmt(out.at(-1)!.perSecond)} deliveries/s`);
      await conn.flushall();
    } finally {
      await conn.quit();
    }
  }
  return out;
}

/** used_memory delta per feed entry after filling `subscribers` feeds with `articles` ids each. */
async function feedMemory(url: string, subscribers: number, articles: number) {
  progress(`row 6: bytes per buffered feed entry (${fmt(subscribers)} subscribers x ${articles} articles, ours and naive)`);
  const conn = connectValkey(url, { name: "bench-feedmem" });
  try {
    await conn.flushall();
    const keys = createKeys({ prefix: `fm${randomHex(3)}` });
    const redis = upstashOverValkey(conn);
    await seedSubscribers(conn, keys, "sports", subscribers);
    const before = await usedMemory(conn);
    let entries = 0;
    // Real feed ids are base-36 of a global sequence; start where a live system would be.
    for (let a = 0; a < articles; a++) entries += (await fanOutArticle(redis, keys, (1_000_000 + a).toString(36), "sports", { feedCap: 500, markerTtlSeconds: 3600 })).delivered;
    const ours = { entries, bytesPerEntry: round(((await usedMemory(conn)) - before) / entries, 1), note: "includes the per-(article, bucket) fan-out markers and the feed keys themselves" };
    await conn.flushall();

    const naiveArticles = Math.min(articles, 20);
    const naiveSubs = Math.min(subscribers, 1000);
    const prefix = `nm${randomHex(3)}`;
    await seedNaiveSubscribers(conn, prefix, "sports", naiveSubs);
    const nb = await usedMemory(conn);
    let naiveEntries = 0;
    for (let a = 0; a < naiveArticles; a++) naiveEntries += (await naiveFanOut(conn, { prefix, topic: "sports", articleId: (1_000_000 + a).toString(36) })).deliveries;
    const naive = { entries: naiveEntries, bytesPerEntry: round(((await usedMemory(conn)) - nb) / naiveEntries, 1), note: `${naiveSubs} subscribers x ${naiveArticles} articles: feed list + feed stream + seen set per user` };
    await conn.flushall();
    return { ours, naive };
  } finally {
    await conn.quit();
  }
}

// ------------------------------------------------------------------ tool cache

async function toolCacheRow(url: string, quick: boolean) {
  progress("row 7: tool cache hit path and a 50%-repeat replay");
  const conn = connectValkey(url, { name: "bench-toolcache" });
  try {
    const keys = createKeys({ prefix: `tc${randomHex(3)}` });
    const redis = upstashOverValkey(conn);
    const text = "The quick brown fox jumps over the lazy dog. Markets rallied as tech shares rose. Officials said talks would resume next week.";
    const enrich = (t: string) => ({ summary: summarize(t, { maxSentences: 2, maxChars: 280 }), keywords: extractKeywords("title", t, 6), readingMinutes: readingTimeMinutes(t) });
    await cachedTool(redis, keys, { tool: "enrich", args: { text }, ttlSeconds: 3600, fn: () => enrich(text) });
    const hitMs: number[] = [];
    for (let i = 0; i < (quick ? 500 : 3000); i++) {
      const t0 = performance.now();
      const r = await cachedTool(redis, keys, { tool: "enrich", args: { text }, ttlSeconds: 3600, fn: () => enrich(text) });
      hitMs.push(performance.now() - t0);
      if (!r.hit) throw new Error("expected a cache hit");
    }

    // Replay: N calls, half of them repeats of earlier calls, 10 at a time.
    const unique = quick ? 60 : 200;
    const calls: number[] = [];
    for (let i = 0; i < unique; i++) calls.push(i);
    for (let i = 0; i < unique; i++) calls.splice(unique + Math.floor(Math.random() * (i + 1)), 0, i);
    const replay = async (latencyMs: number, cached: boolean, fn: (i: number) => unknown) => {
      const tool = `t${randomHex(3)}`;
      let next = 0;
      let hits = 0;
      const call = (i: number) =>
        cached
          ? cachedTool(redis, keys, { tool, args: { i }, ttlSeconds: 3600, fn: async () => (latencyMs ? await new Promise((r) => setTimeout(r, latencyMs)) : undefined, fn(i)) }).then((r) => (hits += r.hit ? 1 : 0))
          : (async () => (latencyMs ? await new Promise((r) => setTimeout(r, latencyMs)) : undefined, fn(i)))();
      const started = performance.now();
      await Promise.all(
        Array.from({ length: 10 }, async () => {
          while (next < calls.length) await call(calls[next++]);
        }),
      );
      return { seconds: (performance.now() - started) / 1000, hits };
    };
    const texts = Array.from({ length: unique }, (_, i) => `${text} Item ${i} adds its own detail about case ${i}.`);
    const results: Record<string, unknown> = {};
    for (const [name, latency] of [["simulated remote tool, 25 ms per call", 25], ["local enrich function (summary + keywords)", 0]] as const) {
      const plain = await replay(latency, false, (i) => enrich(texts[i]));
      const cached = await replay(latency, true, (i) => enrich(texts[i]));
      results[name] = { calls: calls.length, repeats: calls.length - unique, uncachedSeconds: round(plain.seconds, 3), cachedSeconds: round(cached.seconds, 3), hits: cached.hits, speedUp: round(plain.seconds / cached.seconds, 2) };
    }
    return { hitPath: quantiles(hitMs), replay: results };
  } finally {
    await conn.quit();
  }
}

// ------------------------------------------------------------------ HTTP mode

/**
 * The news pipeline with its handlers in workerd (Miniflare running the built
 * bundle), the worker-host dispatching over signed HTTP, handlers reaching
 * Valkey through the REST bridge: startHttpModeStack from the edge work.
 */
async function httpMode(url: string, articles: BenchArticle[], users: number) {
  progress(`row 3: HTTP mode through workerd (build the Worker bundle, start Miniflare + REST bridge), ${articles.length} articles, ${users} users`);
  const work = mkdtempSync(join(tmpdir(), "edgepipe-bench-http-"));
  try {
    const bundle = await buildWorkerBundle({ outdir: join(work, "worker") });
    const config = loadConfig({ ...process.env, VALKEY_URL: url, PORT: "0", HOST: "127.0.0.1", DEMO: "off", KEY_PREFIX: `ht${randomHex(3)}`, UPSTASH_REDIS_REST_URL: "http://127.0.0.1:0", UPSTASH_REDIS_REST_TOKEN: randomHex(16) }, { appSettings: NewsSettings });
    const stack = await startHttpModeStack({ config, pipeline: newsPipeline, workerd: { kind: "miniflare", scriptPath: bundle.scriptPath }, log: (l) => progress(`[http] ${l}`) });
    try {
      const { keys } = settingsFor(stack.env);
      await seedDemoUsers(stack.env.REDIS!, keys, users);
      const redis = stack.env.REDIS!;
      const started = performance.now();
      const inputs = articleInputs(articles);
      for (let i = 0; i < inputs.length; i += 500) await startRuns(redis, inputs.slice(i, i + 500), { keys, pipeline: newsPipeline });
      let last = 0;
      const deadline = Date.now() + 600_000;
      while (!(await pipelineIdle(stack.conn, keys, newsPipeline))) {
        if (Date.now() > deadline) throw new Error("HTTP mode did not drain in 600 s");
        if (Date.now() - last > 1000) {
          last = Date.now();
          progress(`http mode: ${(await stack.conn.hget(keys.stageStats("fanout", 0), "processed")) ?? 0} articles through fanout`);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
      const seconds = (performance.now() - started) / 1000;
      return { articles: articles.length, users, seconds: round(seconds, 3), perSecond: Math.round(articles.length / seconds), bundleKiB: round(bundle.bytes / 1024) };
    } finally {
      await stack.close();
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Measures the rows that need the news pipeline and edge mode. */
export async function extraRows({ server, articles, quick, fanoutSizes, flush }: { server: BenchServer; articles: BenchArticle[]; quick: boolean; fanoutSizes: number[]; flush(): Promise<void> }): Promise<ExtraRows> {
  // 100 demo users (2-4 of 11 topics each: ~29 feed deliveries per article) keep
  // the pipeline rows about the pipeline; row 5 measures fan-out at scale.
  const users = 100;
  const newsN = quick ? Math.min(1500, articles.length) : articles.length;
  const bullmqN = quick ? Math.min(1000, newsN) : newsN;
  const news = await attempt("news pipeline in-process", () => newsInProcess(server.url, articles.slice(0, newsN), users));
  await flush();
  const bullmqNews = await attempt("BullMQ news chain", () => newsBullmq(server.url, articles.slice(0, bullmqN), users));
  await flush();
  const newsHost = await attempt("news worker-host process", () =>
    measureHostProcess({ url: server.url, pipeline: newsPipeline, pipelineName: "news", users, payloads: articleInputs(articles.slice(0, newsN)), onTick: progress }),
  );
  await flush();
  const httpN = quick ? Math.min(400, newsN) : Math.min(5000, newsN);
  const http = await attempt("HTTP mode", () => httpMode(server.url, articles.slice(0, httpN), users));
  await flush();
  const fanout = await attempt("our fan-out", () => ourFanOut(server.url, fanoutSizes));
  await flush();
  const feedMem = await attempt("feed memory", () => (quick ? feedMemory(server.url, 1000, 50) : feedMemory(server.url, 2000, 200)));
  await flush();
  const toolCache = await attempt("tool cache", () => toolCacheRow(server.url, quick));
  await flush();

  return {
    results: { news, bullmqNews, newsHost, http, fanout, feedMemory: feedMem, toolCache },
    hasFanout: isMeasured(fanout),
    hostProcessCandidates: [[`news, ${users} users`, newsHost]],
    pipelineRows: () => {
      if (!isMeasured(news)) return [missing("1a pipeline, real news handlers, in-process", news.notMeasured, ">= 10x BullMQ")];
      const base = isMeasured(bullmqNews) ? bullmqNews : undefined;
      const r = base ? news.perSecond / base.perSecond : undefined;
      return [
        {
          row: `1a news pipeline (ingest + 4 real stages, ${users} users), in-process`,
          ours: `${fmt(news.perSecond)} art/s (${fmt(news.fanoutDeliveries)} feed deliveries)${fmtCpu(news)}`,
          baseline: base ? `BullMQ ${fmt(base.perSecond)} art/s${fmtCpu(base)}` : `BullMQ not measured (${(bullmqNews as NotMeasured).notMeasured})`,
          ratio: r ? `${r.toFixed(1)}x` : "-",
          target: ">= 10x BullMQ",
          verdict: r === undefined ? "-" : r >= 10 ? "met" : "NOT met",
        },
      ];
    },
    httpRows: () => {
      if (!isMeasured(http)) return [missing("3 HTTP mode through workerd (news)", http.notMeasured)];
      const r = isMeasured(news) ? http.perSecond / news.perSecond : undefined;
      return [{ row: `3 HTTP mode through workerd (news, ${users} users, ${fmt(http.articles)} art)`, ours: `${fmt(http.perSecond)} art/s`, baseline: isMeasured(news) ? `in-process ${fmt(news.perSecond)} art/s` : "in-process not measured", ratio: r ? `${r.toFixed(2)}x` : "-", target: "-", verdict: "-" }];
    },
    fanoutRows: (naive) => {
      if (!isMeasured(fanout)) return [missing("5 fan-out", fanout.notMeasured, ">= 40x naive; >= 150k/s @ 10k")];
      const naiveList = (isMeasured(naive as never) ? naive : []) as Array<{ subscribers: number; perSecond: number }>;
      return fanout.map((p) => {
        const b = naiveList.find((n) => n.subscribers === p.subscribers);
        const r = b ? p.perSecond / b.perSecond : undefined;
        const targets = p.subscribers === 10_000 ? ">= 40x naive; >= 150k/s" : ">= 40x naive";
        const met = r !== undefined && r >= 40 && (p.subscribers !== 10_000 || p.perSecond >= 150_000);
        return { row: `5 fan-out, 1 article to ${fmt(p.subscribers)} subscribers`, ours: `${fmt(p.perSecond)} deliveries/s`, baseline: b ? `naive ${fmt(b.perSecond)}/s` : "naive not measured", ratio: r ? `${r.toFixed(0)}x` : "-", target: targets, verdict: r === undefined ? "-" : met ? "met" : "NOT met" };
      });
    },
    fanoutSeries: () => (isMeasured(fanout) ? [{ name: "ours: fan-out Lua", points: fanout.map((p) => [p.subscribers, p.perSecond] as [number, number]) }] : []),
    memoryRows: () => {
      if (!isMeasured(feedMem)) return [missing("6 bytes per buffered feed entry", feedMem.notMeasured, "<= 40 B")];
      return [{ row: "6 bytes per buffered feed entry", ours: `${feedMem.ours.bytesPerEntry} B (${fmt(feedMem.ours.entries)} entries)`, baseline: `naive ${feedMem.naive.bytesPerEntry} B`, ratio: "-", target: "<= 40 B", verdict: feedMem.ours.bytesPerEntry <= 40 ? "met" : "NOT met" }];
    },
    toolCacheRows: () => {
      if (!isMeasured(toolCache)) return [missing("7 tool cache", toolCache.notMeasured)];
      const rows: Row[] = [{ row: "7 tool cache hit path (sha-256 + GET + hit counter)", ours: `p50 ${toolCache.hitPath.p50} ms, p99 ${toolCache.hitPath.p99} ms`, baseline: "-", ratio: "-", target: "-", verdict: "-" }];
      for (const [name, r] of Object.entries(toolCache.replay) as Array<[string, { calls: number; uncachedSeconds: number; cachedSeconds: number; speedUp: number; hits: number }]>) {
        rows.push({ row: `7 replay, 50% repeats (${name})`, ours: `${r.cachedSeconds} s cached, ${r.hits}/${r.calls} hits`, baseline: `${r.uncachedSeconds} s uncached`, ratio: `${r.speedUp}x`, target: "-", verdict: "-" });
      }
      return rows;
    },
  };
}
