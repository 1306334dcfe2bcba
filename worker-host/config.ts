/**
 * The one config loader of the Node side: reads process.env once, validates
 * it with zod, and fails with a list of what is wrong.
 */
import { z } from "zod";

const bool = z.enum(["on", "off", "true", "false", "1", "0"]).transform((v) => v === "on" || v === "true" || v === "1");

export const HostConfig = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8787),
  HOST: z.string().default("127.0.0.1"),
  VALKEY_URL: z.string().regex(/^rediss?:\/\//, "VALKEY_URL must start with redis:// or rediss://").optional(),
  VALKEY_SERVER: z.string().optional(),
  VALKEY_DATA_DIR: z.string().default(".data/valkey"),
  VALKEY_PORT: z.coerce.number().int().min(0).max(65535).default(0),
  DEMO: bool.default(true),
  API_TOKEN: z.string().min(8, "API_TOKEN must be at least 8 characters").optional(),
  STAGE_BASE_URL: z.string().url().optional(),
  STAGE_SIGNING_KEYS: z.string().optional(),
  UPSTASH_REDIS_REST_URL: z.string().url().optional(),
  UPSTASH_REDIS_REST_TOKEN: z.string().optional(),
  KEY_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]{1,32}$/).default("ep"),
  PARTITIONS: z.coerce.number().int().min(1).max(1024).default(1),
  BATCH_SIZE: z.coerce.number().int().min(1).max(1000).default(100),
  CONCURRENCY: z.coerce.number().int().min(1).max(64).default(2),
  BLOCK_MS: z.coerce.number().int().min(10).max(60_000).default(1000),
  VISIBILITY_TIMEOUT_MS: z.coerce.number().int().min(100).default(30_000),
  MAX_DELIVERIES: z.coerce.number().int().min(1).max(100).default(5),
  RETRY_BACKOFF_MS: z.coerce.number().int().min(0).default(1000),
  STREAM_MAXLEN: z.coerce.number().int().min(100).default(10_000),
  CHECKPOINT_TTL_SECONDS: z.coerce.number().int().min(60).default(7 * 24 * 3600),
  /** Origins allowed to call write endpoints from a browser (comma-separated); reads allow any origin. */
  CORS_ORIGINS: z.string().optional(),
  /** `off` restricts GETs to CORS_ORIGINS too. */
  CORS_PUBLIC_READS: bool.default(true),
  /** Directory of the built web client served at `/` (empty string: serve none). */
  WEB_DIR: z.string().optional(),
  /** SSE live updates: feed-head poll interval (ms) and stream lifetime before the client reconnects (s). */
  SSE_POLL_MS: z.coerce.number().int().min(50).max(60_000).optional(),
  SSE_MAX_SECONDS: z.coerce.number().int().min(1).max(86_400).optional(),
  FEED_BUCKETS: z.coerce.number().int().min(1).max(4096).default(16),
  // News pipeline (passed to handlers; validated again by functions/news/config.ts)
  FEED_CAP: z.coerce.number().int().min(1).max(100_000).optional(),
  FEED_URLS: z.string().optional(),
  /** How often `npm start` polls FEED_URLS (the Workers cron does it at the edge). */
  FEED_POLL_SECONDS: z.coerce.number().int().min(10).default(300),
  DEDUPE_TTL_SECONDS: z.coerce.number().int().min(1).optional(),
  ARTICLE_TTL_SECONDS: z.coerce.number().int().min(60).optional(),
  LLM_BASE_URL: z.string().url().optional(),
  LLM_API_KEY: z.string().optional(),
  LLM_MODEL: z.string().min(1).optional(),
  /** Demo of `npm start`: users seeded and built-in articles trickled in. */
  DEMO_USERS: z.coerce.number().int().min(0).max(100_000).default(50),
  DEMO_ARTICLES: z.coerce.number().int().min(0).max(10_000).default(100),
  DEMO_INTERVAL_MS: z.coerce.number().int().min(0).default(1500),
});
export type HostConfig = z.infer<typeof HostConfig>;

/** Config variables handed to the app's handlers as env vars (when set). */
export const APP_VARS = ["SSE_POLL_MS", "SSE_MAX_SECONDS", "FEED_CAP", "FEED_URLS", "DEDUPE_TTL_SECONDS", "ARTICLE_TTL_SECONDS", "LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL"] as const;

/** Parses the environment; throws one error listing every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): HostConfig {
  // An empty variable (`VALKEY_URL=`) means unset, as in most shells' habits.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = HostConfig.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join("\n")}`);
  }
  return parsed.data;
}

/** The stage-worker tuning a host config asks for (shared by npm start and npm run dev). */
export function workerTuning(config: HostConfig) {
  return {
    batchSize: config.BATCH_SIZE,
    concurrency: config.CONCURRENCY,
    blockMs: config.BLOCK_MS,
    visibilityMs: config.VISIBILITY_TIMEOUT_MS,
    maxDeliveries: config.MAX_DELIVERIES,
    backoffMs: config.RETRY_BACKOFF_MS,
    checkpointTtlSeconds: config.CHECKPOINT_TTL_SECONDS,
  };
}
