/**
 * Ingest: every article starts one run of the news pipeline (its `ingest`
 * step is recorded by enqueue-runs.lua). Used by POST /v1/articles, the cron
 * trigger (RSS/Atom feeds in FEED_URLS), the replay CLI and the demo.
 */
import type { TraceParent } from "../envelope";
import { settingsFor } from "../config";
import type { Keys } from "../keys";
import { redisFromEnv, type AppEnv, type RedisClient } from "../redis";
import { newRunId } from "../envelope";
import { startRuns } from "../runs";
import { sha256HexSync } from "../tools/sha256";
import { fetchFeed, type FeedArticle } from "../tools/rss";
import { feedUrlsOf, newsSettings } from "./config";
import { newsPipeline } from "./pipeline";
import { ArticleInput, MAX_ARTICLES_PER_CALL } from "./schema";

/** Default once-only window of article ids (the news DEDUPE_TTL_SECONDS default). */
const DEDUPE_WINDOW_MS = 7 * 24 * 3600 * 1000;

/**
 * The run id of an article: derived from the client's own `id` when it has
 * one (so a re-post within the dedupe window answers the run it started), a
 * fresh id otherwise.
 */
export function articleRunId(article: ArticleInput): string {
  return article.id !== undefined ? `a${sha256HexSync(`article:${article.id}`).slice(0, 40)}` : newRunId();
}

export interface IngestOptions {
  ttlSeconds?: number;
  recentRunsMax?: number;
  /** Backpressure limit (settings BACKPRESSURE_MAX_LAG). */
  maxBacklog?: number;
  /** Run ids to use (same length as articles); default articleRunId of each. */
  runIds?: string[];
  /** An article id re-posted within this window answers its existing run (news DEDUPE_TTL_SECONDS). */
  dedupeWindowMs?: number;
  /** Start the runs at this epoch ms (delayed runs). */
  runAt?: number;
  /** The caller's trace (its `traceparent`): the runs join it. */
  trace?: TraceParent;
}

/**
 * Starts one run per article (in order); returns the run ids. Articles must
 * be validated. An article whose `id` started a run within the dedupe window
 * answers that run's id and starts nothing.
 */
export async function ingestArticles(redis: RedisClient, keys: Keys, articles: ArticleInput[], { ttlSeconds, recentRunsMax, maxBacklog, runIds = articles.map(articleRunId), dedupeWindowMs = DEDUPE_WINDOW_MS, runAt, trace }: IngestOptions = {}): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < articles.length; i += MAX_ARTICLES_PER_CALL) {
    const chunk = { keys, pipeline: newsPipeline, ttlSeconds, recentRunsMax, maxBacklog, runIds: runIds.slice(i, i + MAX_ARTICLES_PER_CALL), onceWithinMs: dedupeWindowMs, runAt, trace };
    out.push(...(await startRuns(redis, articles.slice(i, i + MAX_ARTICLES_PER_CALL), chunk)));
  }
  return out;
}

/** Trims feed items to what ArticleInput accepts, dropping those it cannot. */
function toArticleInputs(items: FeedArticle[]): ArticleInput[] {
  const out: ArticleInput[] = [];
  for (const item of items) {
    const parsed = ArticleInput.safeParse({ ...item, title: item.title.slice(0, 1000), body: item.body.slice(0, 100_000) });
    if (parsed.success) out.push(parsed.data);
    else if (item.url) {
      // An unusable link should not cost the article.
      const { url: _drop, ...rest } = item;
      const retry = ArticleInput.safeParse({ ...rest, title: rest.title.slice(0, 1000), body: rest.body.slice(0, 100_000) });
      if (retry.success) out.push(retry.data);
    }
  }
  return out;
}

export interface FeedIngestReport {
  url: string;
  articles: number;
  cacheHit?: boolean;
  error?: string;
}

/**
 * Fetches RSS/Atom feeds through the tool cache and starts a run per item.
 * Items already seen are dropped by the fetcher's dedupe (same canonical URL
 * or content), so polling a feed repeatedly only adds what is new.
 */
export async function ingestFeedUrls(env: AppEnv, urls: string[], { fetchImpl }: { fetchImpl?: typeof fetch } = {}): Promise<FeedIngestReport[]> {
  const { keys, settings } = settingsFor(env);
  const news = newsSettings(env);
  const redis = redisFromEnv(env);
  return Promise.all(
    urls.map(async (url): Promise<FeedIngestReport> => {
      try {
        const { articles, hit } = await fetchFeed(redis, keys, url, {
          ttlSeconds: news.RSS_CACHE_TTL_SECONDS,
          rate: { burst: news.RSS_RATE_BURST, perSecond: news.RSS_RATE_PER_SECOND },
          ...(fetchImpl ? { fetchImpl } : {}),
        });
        const inputs = toArticleInputs(articles);
        if (inputs.length > 0) {
          await ingestArticles(redis, keys, inputs, { ttlSeconds: settings.CHECKPOINT_TTL_SECONDS, recentRunsMax: settings.RECENT_RUNS_MAX, maxBacklog: settings.BACKPRESSURE_MAX_LAG, dedupeWindowMs: news.DEDUPE_TTL_SECONDS * 1000 });
        }
        return { url, articles: inputs.length, cacheHit: hit };
      } catch (err) {
        return { url, articles: 0, error: (err as Error).message };
      }
    }),
  );
}

/** The Workers cron trigger: ingests every feed of FEED_URLS. */
export async function scheduledIngest(env: AppEnv): Promise<FeedIngestReport[]> {
  const urls = feedUrlsOf(newsSettings(env));
  if (urls.length === 0) return [];
  const reports = await ingestFeedUrls(env, urls);
  for (const r of reports) {
    if (r.error) console.error(`[cron] ${r.url}: ${r.error}`);
    else console.log(`[cron] ${r.url}: ${r.articles} item(s)${r.cacheHit ? " (cached)" : ""}`);
  }
  return reports;
}
