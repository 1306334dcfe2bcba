/**
 * Reads the deployment settings the app needs from its environment
 * (Workers bindings or the Node host's env object), validated.
 */
import { z } from "zod";
import { createKeys, type Keys } from "./keys";
import type { AppEnv } from "./redis";
import { BACKPRESSURE_MAX_LAG } from "./runs";

/** The framework settings schema (docs/configuration.md lists its variables). */
export const Settings = z.object({
  KEY_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]{1,32}$/).default("ep"),
  PARTITIONS: z.coerce.number().int().min(1).max(1024).default(1),
  FEED_BUCKETS: z.coerce.number().int().min(1).max(4096).default(16),
  CHECKPOINT_TTL_SECONDS: z.coerce.number().int().min(60).default(7 * 24 * 3600),
  /** Recent-runs index bound per partition (GET /v1/runs lists from it). */
  RECENT_RUNS_MAX: z.coerce.number().int().min(10).max(1_000_000).default(10_000),
  /** Largest request body of the public API, bytes (413 past it, checked before the body is read). */
  MAX_BODY_BYTES: z.coerce.number().int().min(1024).max(1024 * 1024 * 1024).default(1024 * 1024),
  /** Largest body of a signed stage call (`POST /stages/:name`), bytes. */
  STAGE_MAX_BODY_BYTES: z.coerce.number().int().min(1024).max(1024 * 1024 * 1024).default(32 * 1024 * 1024),
  /** A Worker (createWorker) with no API_TOKEN refuses writes unless this is `on`; the Node host never refuses (it says so at start). */
  ALLOW_OPEN_WRITES: z.enum(["on", "off"]).default("off"),
  /** Ingest answers 429 while the entry stage's backlog (pending + undelivered) is at least this; 0 = off. */
  BACKPRESSURE_MAX_LAG: z.coerce.number().int().min(0).default(BACKPRESSURE_MAX_LAG),
  /** `on`: ingest answers 202 only once the server confirms the runs reached the disk (WAITAOF, group-committed). */
  DURABLE_ACCEPT: z.enum(["on", "off", "true", "false", "1", "0"]).transform((v) => v === "on" || v === "true" || v === "1").default(false),
  /** How long ingest waits for that confirmation before it answers 503 not_durable. */
  DURABLE_ACCEPT_TIMEOUT_MS: z.coerce.number().int().min(10).max(60_000).default(2000),
  /** How long an Idempotency-Key answers its first answer (POST /v1/runs, app ingest routes). */
  IDEMPOTENCY_TTL_SECONDS: z.coerce.number().int().min(60).max(30 * 24 * 3600).default(24 * 3600),
  /** Where handlers in a Worker send their spans (OTLP/HTTP base URL); unset: they send none. In-process handlers use the host's exporter. */
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().url().optional(),
  OTEL_EXPORTER_OTLP_PROTOCOL: z.enum(["http/protobuf", "http/json"]).default("http/protobuf"),
  OTEL_EXPORTER_OTLP_HEADERS: z.string().optional(),
  /** The `service.name` of the spans handlers send from a Worker. */
  OTEL_SERVICE_NAME: z.string().min(1).default("edgepipe-stages"),
});
export type Settings = z.infer<typeof Settings>;

const cache = new WeakMap<object, { settings: Settings; keys: Keys }>();

/** Settings and key builder for an env; memoized per env object (pure function of it). */
export function settingsFor(env: AppEnv | undefined): { settings: Settings; keys: Keys } {
  const source = env ?? {};
  const hit = cache.get(source);
  if (hit) return hit;
  const parsed = Settings.safeParse(source);
  if (!parsed.success) {
    throw new Error(`invalid configuration: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  }
  const value = { settings: parsed.data, keys: createKeys({ prefix: parsed.data.KEY_PREFIX, partitions: parsed.data.PARTITIONS, feedBuckets: parsed.data.FEED_BUCKETS }) };
  cache.set(source, value);
  return value;
}
