/**
 * The replay CLI: reads a CSV (AG News `label,title,description`, or
 * `title,body`) or JSONL file and posts its articles to POST /v1/articles of
 * a running app in batches (at most 500 per call), optionally paced to
 * `--rate` articles per second; or, with `--direct`, enqueues them straight
 * into Valkey: VALKEY_URL (a cluster node's URL is detected), the cluster of
 * VALKEY_CLUSTER_NODES, or the running embedded cluster of VALKEY_CLUSTER
 * (its ports from `<VALKEY_DATA_DIR>-cluster/cluster.json`), with the same
 * PARTITIONS / FEED_BUCKETS defaults as the app. Shows a progress bar on stderr.
 *
 *   npm run replay -- data.csv [--rate N] [--limit N] [--url http://127.0.0.1:8787] [--direct]
 *   npm run replay -- worker-host/news/sample-articles.jsonl   # 50 demo articles, ships with the repo
 */
import { readFileSync } from "node:fs";
import { basename, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { settingsFor } from "../../functions/config";
import { articlesFromCsv, articlesFromJsonl } from "../../functions/news/csv";
import { ingestArticles } from "../../functions/news/ingest";
import { ArticleInput, MAX_ARTICLES_PER_CALL } from "../../functions/news/schema";
import { NewsSettings } from "../../functions/news/config";
import { loadConfig, type HostConfig } from "../config";
import { progressBar } from "../progress";
import { CLUSTER_KEY_DEFAULTS } from "../../functions/keys";
import { embeddedClusterSeeds } from "../cluster-launcher";
import { clusterDataDir } from "../data-dir";
import { connectDataStore, parseSeedNodes, upstashFor, type SeedNode } from "../data-store";
import { closeConnection } from "../valkey";

/** Reads a CSV or JSONL file into valid article inputs; invalid rows are counted, not sent. */
export function readArticlesFile(path: string, { source }: { source?: string } = {}): { articles: ArticleInput[]; invalid: number } {
  const text = readFileSync(path, "utf8");
  const rows = /\.(jsonl|ndjson)$/i.test(path) ? articlesFromJsonl(text) : articlesFromCsv(text);
  const articles: ArticleInput[] = [];
  let invalid = 0;
  const src = source ?? basename(path).replace(/\.[^.]+$/, "");
  for (const row of rows) {
    const parsed = ArticleInput.safeParse({ ...row, source: ("source" in row && row.source) || src, label: undefined });
    if (parsed.success) articles.push(parsed.data);
    else invalid++;
  }
  return { articles, invalid };
}

export interface ReplayOptions {
  articles: ArticleInput[];
  /** Articles per second; 0 = as fast as the app accepts them. */
  rate?: number;
  /** Base URL of a running app (HTTP mode). */
  url?: string;
  apiToken?: string;
  /** Enqueue straight into Valkey instead of HTTP: one server (valkeyUrl, a cluster node's is detected) or a cluster's seed nodes. */
  direct?: { valkeyUrl?: string; seeds?: SeedNode[]; env: Record<string, string> };
  /** Largest batch per call (<= 500). */
  batchSize?: number;
  /** Show the progress bar (stderr). */
  progress?: boolean;
}

export interface ReplayReport {
  sent: number;
  runIds: string[];
  seconds: number;
  articlesPerSecond: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Sends the articles, paced; resolves with the run ids (input order). */
export async function replay({ articles, rate = 0, url = "http://127.0.0.1:8787", apiToken, direct, batchSize = MAX_ARTICLES_PER_CALL, progress = true }: ReplayOptions): Promise<ReplayReport> {
  const size = Math.max(1, Math.min(MAX_ARTICLES_PER_CALL, batchSize, rate > 0 ? Math.max(1, Math.ceil(rate / 10)) : MAX_ARTICLES_PER_CALL));
  const bar = progress ? progressBar(articles.length, { label: "replay", unit: "articles" }) : undefined;
  let send: (batch: ArticleInput[]) => Promise<string[]>;
  let close = async () => {};
  if (direct) {
    // On a cluster each partition's enqueue goes to its master (the host's requester routes by key).
    const store = await connectDataStore({ url: direct.valkeyUrl, seeds: direct.seeds, name: "edgepipe-replay", log: () => {} });
    const redis = upstashFor(store.conn);
    const env = { ...direct.env };
    if (store.mode === "cluster") {
      env.PARTITIONS ??= String(CLUSTER_KEY_DEFAULTS.partitions);
      env.FEED_BUCKETS ??= String(CLUSTER_KEY_DEFAULTS.feedBuckets);
    }
    const { keys, settings } = settingsFor(env);
    send = (batch) => ingestArticles(redis, keys, batch, { ttlSeconds: settings.CHECKPOINT_TTL_SECONDS });
    close = () => closeConnection(store.conn, 2000);
  } else {
    const endpoint = `${url.replace(/\/+$/, "")}/v1/articles`;
    send = async (batch) => {
      let throttledMs = 0;
      for (let attempt = 1; ; attempt++) {
        const res = await fetch(endpoint, {
          method: "POST",
          headers: { "content-type": "application/json", ...(apiToken ? { authorization: `Bearer ${apiToken}` } : {}) },
          body: JSON.stringify({ articles: batch }),
        });
        const body = (await res.json().catch(() => ({}))) as { runIds?: string[]; error?: { message?: string } };
        if (res.status === 202 && body.runIds) return body.runIds;
        // Backpressure: the pipeline is behind and nothing was accepted; wait as told (at most 10 min in all).
        if (res.status === 429 && throttledMs < 600_000) {
          const wait = Math.max(1, Number(res.headers.get("retry-after")) || 1) * 1000;
          throttledMs += wait;
          attempt--;
          await sleep(wait);
          continue;
        }
        if (res.status < 500 || attempt >= 5) throw new Error(`POST ${endpoint} answered ${res.status}: ${body.error?.message ?? "no message"}`);
        await sleep(200 * 2 ** attempt);
      }
    };
  }
  const started = performance.now();
  const runIds: string[] = [];
  try {
    for (let i = 0; i < articles.length; i += size) {
      const batch = articles.slice(i, i + size);
      runIds.push(...(await send(batch)));
      bar?.update(runIds.length);
      if (rate > 0) {
        // Pace against the wall clock, so slow calls do not add up to a lower rate.
        const due = started + (runIds.length / rate) * 1000;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
      }
    }
  } finally {
    await close();
  }
  const seconds = (performance.now() - started) / 1000;
  const report = { sent: runIds.length, runIds, seconds, articlesPerSecond: runIds.length / Math.max(seconds, 1e-9) };
  bar?.finish(`replayed ${report.sent} articles in ${seconds.toFixed(1)} s (${report.articlesPerSecond.toFixed(0)} articles/s)`);
  return report;
}

/** `replay` command of the CLI; resolves with what was sent. */
export async function replayCommand(argv: string[], config: HostConfig): Promise<ReplayReport> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      rate: { type: "string" },
      limit: { type: "string" },
      url: { type: "string" },
      direct: { type: "boolean", default: false },
      source: { type: "string" },
      quiet: { type: "boolean", default: false },
    },
  });
  const [file] = positionals;
  if (!file) throw new Error("usage: npm run replay -- <file.csv|file.jsonl> [--rate N] [--limit N] [--url http://127.0.0.1:8787] [--direct] [--source NAME]");
  const number = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got ${v}`);
    return n;
  };
  const rate = number("rate", values.rate) ?? 0;
  const limit = number("limit", values.limit);
  const { articles, invalid } = readArticlesFile(file, { source: values.source });
  const selected = limit !== undefined ? articles.slice(0, limit) : articles;
  console.error(`${file}: ${articles.length} articles${invalid ? ` (${invalid} invalid rows skipped)` : ""}; sending ${selected.length}${rate ? ` at ${rate}/s` : ""}`);
  if (values.direct) {
    // The running app's store: VALKEY_CLUSTER_NODES, VALKEY_URL, or the embedded cluster of VALKEY_CLUSTER (must be running).
    const seeds = config.VALKEY_CLUSTER_NODES ? parseSeedNodes(config.VALKEY_CLUSTER_NODES) : !config.VALKEY_URL && config.VALKEY_CLUSTER ? embeddedClusterSeeds(clusterDataDir(config.VALKEY_DATA_DIR)) : undefined;
    if (!config.VALKEY_URL && !seeds) throw new Error("--direct needs VALKEY_URL (redis://host:port) of the running app's server, VALKEY_CLUSTER_NODES of its cluster, or VALKEY_CLUSTER=N for its embedded cluster");
    // PARTITIONS / FEED_BUCKETS as the app chose them: given ones, else the store's defaults (replay() picks the cluster's).
    const given = (name: "PARTITIONS" | "FEED_BUCKETS") => (config.given.has(name) ? { [name]: String(config[name]) } : {});
    return replay({
      articles: selected,
      rate,
      direct: { valkeyUrl: seeds ? undefined : config.VALKEY_URL, seeds, env: { KEY_PREFIX: config.KEY_PREFIX, CHECKPOINT_TTL_SECONDS: String(config.CHECKPOINT_TTL_SECONDS), ...given("PARTITIONS"), ...given("FEED_BUCKETS") } },
      progress: !values.quiet,
    });
  }
  return replay({ articles: selected, rate, url: values.url ?? `http://${config.HOST}:${config.PORT}`, apiToken: config.API_TOKEN, progress: !values.quiet });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  replayCommand(process.argv.slice(2), loadConfig(process.env, { appSettings: NewsSettings })).catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
