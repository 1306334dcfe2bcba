/**
 * What the news app runs beside the Node host (its `start`, called by
 * `npm start` and `npm run dev` once the API serves): the demo (users seeded,
 * built-in articles trickled in) and polling FEED_URLS, which the Workers cron
 * trigger does at the edge. Plain timers and the env's Valkey client only.
 */
import { settingsFor } from "../config";
import type { AppStartContext } from "../edge-app";
import { redisFromEnv } from "../redis";
import { feedUrlsOf, newsSettings } from "./config";
import { generateDemoArticles } from "./demo-feed";
import { ingestArticles, ingestFeedUrls } from "./ingest";
import { demoUid, seedDemoUsers } from "./users";

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

/** Seeds demo users and trickles the built-in demo feed in, so the app looks live. */
export async function runDemo({ env, url, log, signal }: AppStartContext): Promise<void> {
  const { keys, settings } = settingsFor(env);
  const news = newsSettings(env);
  const redis = redisFromEnv(env);
  const users = await seedDemoUsers(redis, keys, news.DEMO_USERS);
  if (users.length > 0) log(`demo: ${users.length} users (${users[0].uid}..${users[users.length - 1].uid}), e.g. ${url}/v1/feeds/${users[0].uid}`);
  // A new seed per session: the dedupe window would drop a repeat of the last session's articles.
  const articles = generateDemoArticles(news.DEMO_ARTICLES, { seed: Math.floor(Date.now() / 1000), now: Date.now() }).map(({ intendedTopic: _t, ...a }) => a);
  if (articles.length === 0) return;
  log(`demo: replaying ${articles.length} built-in articles, one every ${news.DEMO_INTERVAL_MS} ms after a first burst of 10`);
  const ttlSeconds = settings.CHECKPOINT_TTL_SECONDS;
  const first = await ingestArticles(redis, keys, articles.slice(0, 10), { ttlSeconds });
  log(`demo run started: ${url}/v1/runs/${first[0]}`);
  for (const article of articles.slice(10)) {
    await pause(news.DEMO_INTERVAL_MS, signal);
    if (signal.aborted) return;
    await ingestArticles(redis, keys, [article], { ttlSeconds });
  }
  log("demo: all built-in articles ingested");
}

/** Polls FEED_URLS every FEED_POLL_SECONDS (what the Workers cron trigger does at the edge). */
export async function pollFeeds({ env, log, signal }: AppStartContext): Promise<void> {
  const news = newsSettings(env);
  const urls = feedUrlsOf(news);
  if (urls.length === 0) return;
  log(`feeds: polling ${urls.length} RSS/Atom feed(s) every ${news.FEED_POLL_SECONDS} s`);
  while (!signal.aborted) {
    for (const r of await ingestFeedUrls(env, urls)) {
      log(r.error ? `feeds: ${r.url}: ${r.error}` : `feeds: ${r.url}: ${r.articles} item(s)${r.cacheHit ? " (cached)" : ""}`);
    }
    await pause(news.FEED_POLL_SECONDS * 1000, signal);
  }
}

/** The news app's `start`: the demo (unless DEMO=off) and feed polling, side by side. */
export async function startNewsHostTasks(ctx: AppStartContext): Promise<void> {
  const background = (name: string, task: () => Promise<void>) =>
    task().catch((err) => {
      if (!ctx.signal.aborted) ctx.log(`${name} failed: ${(err as Error).message}`);
    });
  if (ctx.demo) void background("demo", () => runDemo(ctx));
  else ctx.log("demo off (DEMO=off): no demo users, no demo articles; data from earlier starts stays (npm run reset clears it)");
  void background("feed polling", () => pollFeeds(ctx));
}

/** Web-client pages of the news app, printed at start. */
export const newsLinks = { feed: `/#/feed/${demoUid(1)}`, topics: "/#/topics" };
