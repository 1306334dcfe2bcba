#!/usr/bin/env node
/**
 * CLI entry.
 *   start   the embedded stack (npm start): Valkey, worker-host, HTTP app; with
 *           DEMO on (default) it seeds demo users and trickles in the built-in
 *           demo feed; FEED_URLS are polled every FEED_POLL_SECONDS.
 *   replay  posts a CSV/JSONL file to a running app (npm run replay -- file.csv).
 *   dev     the edge stack (npm run dev): handlers and API in workerd via `wrangler dev`,
 *           the REST bridge, and the worker-host dispatching over signed HTTP.
 */
import { app, pipeline } from "../functions/index";
import { settingsFor } from "../functions/config";
import { redisFromEnv } from "../functions/redis";
import { feedUrlsOf, newsSettings } from "../functions/news/config";
import { generateDemoArticles } from "../functions/news/demo-feed";
import { ingestArticles, ingestFeedUrls } from "../functions/news/ingest";
import { seedDemoUsers } from "../functions/news/users";
import { loadConfig, type HostConfig } from "./config";
import { HttpInvoker } from "./http-invoker";
import { startHttpModeStack } from "./http-mode";
import { replayCommand } from "./replay";
import { startRuntime, type Runtime } from "./runtime";
import { ensureWebBuild } from "./static-files";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Seeds demo users and trickles the built-in demo feed in, so the app looks live. */
async function runDemo(runtime: Pick<Runtime, "env" | "url">, config: HostConfig, isStopping: () => boolean): Promise<void> {
  const { keys, settings } = settingsFor(runtime.env);
  const redis = redisFromEnv(runtime.env);
  const users = await seedDemoUsers(redis, keys, config.DEMO_USERS);
  if (users.length > 0) console.log(`demo: ${users.length} users (${users[0].uid}..${users[users.length - 1].uid}), e.g. ${runtime.url}/v1/feeds/${users[0].uid}`);
  // A new seed per session: the dedupe window would drop a repeat of the last session's articles.
  const articles = generateDemoArticles(config.DEMO_ARTICLES, { seed: Math.floor(Date.now() / 1000), now: Date.now() }).map(({ intendedTopic: _t, ...a }) => a);
  if (articles.length === 0) return;
  console.log(`demo: replaying ${articles.length} built-in articles, one every ${config.DEMO_INTERVAL_MS} ms after a first burst of 10`);
  const first = await ingestArticles(redis, keys, articles.slice(0, 10), { ttlSeconds: settings.CHECKPOINT_TTL_SECONDS });
  console.log(`demo run started: ${runtime.url}/v1/runs/${first[0]}`);
  for (const article of articles.slice(10)) {
    if (isStopping()) return;
    await sleep(config.DEMO_INTERVAL_MS);
    if (isStopping()) return;
    await ingestArticles(redis, keys, [article], { ttlSeconds: settings.CHECKPOINT_TTL_SECONDS });
  }
  console.log("demo: all built-in articles ingested");
}

/** Polls FEED_URLS (what the Workers cron trigger does at the edge). */
async function pollFeeds(runtime: Pick<Runtime, "env">, config: HostConfig, isStopping: () => boolean): Promise<void> {
  const urls = feedUrlsOf(newsSettings(runtime.env));
  if (urls.length === 0) return;
  console.log(`feeds: polling ${urls.length} RSS/Atom feed(s) every ${config.FEED_POLL_SECONDS} s`);
  while (!isStopping()) {
    for (const r of await ingestFeedUrls(runtime.env, urls)) {
      console.log(r.error ? `feeds: ${r.url}: ${r.error}` : `feeds: ${r.url}: ${r.articles} item(s)${r.cacheHit ? " (cached)" : ""}`);
    }
    for (let waited = 0; waited < config.FEED_POLL_SECONDS * 1000 && !isStopping(); waited += 500) await sleep(500);
  }
}

async function start(): Promise<void> {
  const config = loadConfig();
  // Fast when web/dist exists; a fresh checkout builds the client once.
  if (config.WEB_DIR === undefined && !config.webDisabled) ensureWebBuild();
  // With STAGE_BASE_URL (e.g. the deployed Worker) handlers run there, called over signed HTTP.
  let invoker: HttpInvoker | undefined;
  if (config.STAGE_BASE_URL) {
    if (!config.STAGE_SIGNING_KEYS) throw new Error("STAGE_BASE_URL is set: set STAGE_SIGNING_KEYS to the keys the Worker has (wrangler secret put STAGE_SIGNING_KEYS)");
    invoker = new HttpInvoker({ baseUrl: config.STAGE_BASE_URL, signingKeys: config.STAGE_SIGNING_KEYS });
    console.log(`stage handlers: ${config.STAGE_BASE_URL}/stages/:name over signed HTTP`);
  }
  const runtime = await startRuntime({ config, pipeline, app, invoker });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping (finishing in-flight work)...`);
    await runtime.close();
    console.log("stopped cleanly");
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
  console.log(`pipeline "${pipeline.name}" running: stages ${[...pipeline.stages.keys()].join(" -> ")}`);
  console.log(`valkey: ${runtime.valkeyUrl}${runtime.valkey ? " (embedded)" : ""}`);
  console.log(`listening on ${runtime.url}  (web client: ${runtime.url}/ , health: ${runtime.url}/health, metrics: ${runtime.url}/metrics, topics: ${runtime.url}/v1/topics)`);
  const background = (name: string, task: Promise<void>) => task.catch((err) => !stopping && console.error(`${name} failed: ${(err as Error).message}`));
  if (config.DEMO) background("demo", runDemo(runtime, config, () => stopping));
  else console.log("demo off (DEMO=off): no demo users, no demo articles");
  background("feed polling", pollFeeds(runtime, config, () => stopping));
}

async function replay(): Promise<void> {
  await replayCommand(process.argv.slice(3), loadConfig());
}

async function dev(): Promise<void> {
  const config = loadConfig();
  // wrangler dev serves web/dist as the Worker's static assets.
  ensureWebBuild();
  const stack = await startHttpModeStack({ config, pipeline, workerd: { kind: "wrangler-dev" } });
  let stopping = false;
  // Ctrl-C reaches only this process (wrangler runs in its own process group), so the
  // worker-host commits its in-flight batches before workerd, the bridge and Valkey stop.
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping worker-host, wrangler dev, REST bridge${stack.valkey ? ", embedded valkey" : ""}...`);
    await stack.close();
    console.log("stopped cleanly");
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGHUP", () => void stop("SIGHUP"));
  console.log(`pipeline "${pipeline.name}" in workerd (wrangler dev): stages ${[...pipeline.stages.keys()].join(" -> ")}`);
  console.log(`valkey: ${stack.valkeyUrl}${stack.valkey ? " (embedded)" : ""}; handlers reach it at ${stack.restUrl}`);
  console.log(`worker-host dispatches over signed HTTP to ${config.STAGE_BASE_URL ?? stack.url}/stages/:name`);
  console.log(`listening on ${stack.url}  (health: ${stack.url}/health, topics: ${stack.url}/v1/topics)`);
  const background = (name: string, task: Promise<void>) => task.catch((err) => !stopping && console.error(`${name} failed: ${(err as Error).message}`));
  if (config.DEMO) background("demo", runDemo(stack, config, () => stopping));
  else console.log("demo off (DEMO=off): no demo users, no demo articles");
  // wrangler dev does not fire cron triggers; the host polls FEED_URLS like `npm start` does.
  background("feed polling", pollFeeds(stack, config, () => stopping));
}

const [command = "start"] = process.argv.slice(2);
const commands: Record<string, () => Promise<void>> = { start, dev, replay };
const run = commands[command];
if (!run) {
  console.error(`unknown command ${command}; expected one of: ${Object.keys(commands).join(", ")}`);
  process.exit(2);
}
run().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
