/**
 * Settings of the news app, read from the app's env (Workers vars or the
 * Node host's env object) and validated once per env object. The app hands
 * this schema to the host (`defineApp({ settings })`), which checks the
 * environment with it at start and passes the variables that are set through.
 */
import { z } from "zod";
import type { AppEnv } from "../redis";

/** The schema of the news settings (the Node host validates its environment with it too). */
export const NewsSettings = z.object({
  /** Each user's feed keeps this many newest ids. */
  FEED_CAP: z.coerce.number().int().min(1).max(100_000).default(500),
  /** Latest ids kept per topic for GET /v1/topics/:topic. */
  TOPIC_LIST_CAP: z.coerce.number().int().min(1).max(100_000).default(1000),
  /** Exact duplicates (same canonical URL or same normalized title+body) are dropped within this window. */
  DEDUPE_TTL_SECONDS: z.coerce.number().int().min(1).default(7 * 24 * 3600),
  /** Stored article bodies (hash per article) live this long. */
  ARTICLE_TTL_SECONDS: z.coerce.number().int().min(60).default(7 * 24 * 3600),
  /** Fan-out idempotency markers per (article, bucket): must outlive any redelivery. */
  FANOUT_MARKER_TTL_SECONDS: z.coerce.number().int().min(60).default(24 * 3600),
  /**
   * Route the enricher's summary/keywords through the tool cache. Off by
   * default: that enrichment is local string code taking tens of
   * microseconds, cheaper than the cache's hash + round trips (bench row 7);
   * turn it on when enrichment becomes an expensive or remote call.
   */
  ENRICH_CACHE: z.enum(["on", "off"]).default("off"),
  /** Tool cache TTLs, seconds. */
  ENRICH_CACHE_TTL_SECONDS: z.coerce.number().int().min(1).default(24 * 3600),
  LLM_CACHE_TTL_SECONDS: z.coerce.number().int().min(1).default(7 * 24 * 3600),
  RSS_CACHE_TTL_SECONDS: z.coerce.number().int().min(1).default(300),
  /** Optional OpenAI-compatible classifier endpoint (e.g. https://host/v1). */
  LLM_BASE_URL: z.string().url().optional(),
  LLM_API_KEY: z.string().optional(),
  LLM_MODEL: z.string().min(1).optional(),
  /** `on`: the enricher summarizes with an OpenAI-compatible streaming chat completion, streaming its tokens to the run's output. */
  LLM_SUMMARY: z.enum(["on", "off"]).default("off"),
  /** Endpoint of the summary model (default: LLM_BASE_URL); its key is LLM_API_KEY. */
  LLM_SUMMARY_BASE_URL: z.string().url().optional(),
  /** Model of the summary (default: LLM_MODEL, else gpt-4o-mini). */
  LLM_SUMMARY_MODEL: z.string().min(1).optional(),
  /** Token bucket of the LLM tool: burst and refill per second. */
  LLM_RATE_BURST: z.coerce.number().positive().default(5),
  LLM_RATE_PER_SECOND: z.coerce.number().positive().default(2),
  /** The classifier's LLM token budget per source and minute (flow control; 0 = none). Applies only when an LLM is configured. */
  LLM_TOKENS_PER_MINUTE: z.coerce.number().int().nonnegative().default(100_000),
  /** Token bucket of the RSS fetch tool. */
  RSS_RATE_BURST: z.coerce.number().positive().default(4),
  RSS_RATE_PER_SECOND: z.coerce.number().positive().default(1),
  /** Comma-separated RSS/Atom feed URLs the cron trigger ingests. */
  FEED_URLS: z.string().optional(),
  /** SSE live updates: feed-head poll interval (ms) and stream lifetime before the client reconnects (s). */
  SSE_POLL_MS: z.coerce.number().int().min(50).max(60_000).default(1000),
  SSE_MAX_SECONDS: z.coerce.number().int().min(1).max(86_400).optional(),
  /** Live streams one process (or Workers isolate) holds at once (503 past it) and one user holds (429 past it). */
  SSE_MAX_STREAMS: z.coerce.number().int().min(1).max(1_000_000).default(1000),
  SSE_MAX_STREAMS_PER_USER: z.coerce.number().int().min(1).max(10_000).default(8),
  /** How often the Node host polls FEED_URLS (npm start / npm run dev; the Workers cron does it at the edge). */
  FEED_POLL_SECONDS: z.coerce.number().int().min(10).default(300),
  /** Demo on the Node host (off with DEMO=off): users seeded and built-in articles trickled in. */
  DEMO_USERS: z.coerce.number().int().min(0).max(100_000).default(50),
  DEMO_ARTICLES: z.coerce.number().int().min(0).max(10_000).default(100),
  DEMO_INTERVAL_MS: z.coerce.number().int().min(0).default(1500),
});
export type NewsSettings = z.infer<typeof NewsSettings>;

const cache = new WeakMap<object, NewsSettings>();

/** The news settings of an env; memoized per env object. Throws listing every bad variable. */
export function newsSettings(env: AppEnv | undefined): NewsSettings {
  const source = env ?? {};
  const hit = cache.get(source);
  if (hit) return hit;
  const parsed = NewsSettings.safeParse(source);
  if (!parsed.success) {
    throw new Error(`invalid news configuration: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  }
  cache.set(source, parsed.data);
  return parsed.data;
}

/** Feed URLs of FEED_URLS (comma- or whitespace-separated), invalid ones dropped. */
export function feedUrlsOf(settings: NewsSettings): string[] {
  return (settings.FEED_URLS ?? "")
    .split(/[\s,]+/)
    .map((u) => u.trim())
    .filter((u) => /^https?:\/\//.test(u));
}
