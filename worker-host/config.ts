/**
 * The one config loader of the Node side: reads process.env once, validates
 * it with zod, and fails with a list of what is wrong. It knows the host's
 * own variables; an app's variables are checked with the app's own schema
 * (`defineApp({ settings })`), handed in by the caller.
 */
import { z } from "zod";

const bool = z.enum(["on", "off", "true", "false", "1", "0"]).transform((v) => v === "on" || v === "true" || v === "1");

export const HostConfig = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8787),
  HOST: z.string().default("127.0.0.1"),
  VALKEY_URL: z.string().regex(/^rediss?:\/\//, "VALKEY_URL must start with redis:// or rediss://").optional(),
  /** Seed nodes of a Valkey Cluster (`host:port,...`): cluster mode; user, password and TLS as in VALKEY_URL. */
  VALKEY_CLUSTER_NODES: z.string().regex(/^\s*[^,\s]+:\d{1,5}(\s*,\s*[^,\s]+:\d{1,5})*\s*$/, "VALKEY_CLUSTER_NODES must be host:port,host:port,...").optional(),
  /** Start an embedded local cluster of this many masters (`npm start -- --cluster 3`). */
  VALKEY_CLUSTER: z.coerce.number().int().min(3, "VALKEY_CLUSTER needs at least 3 masters (a failover needs a majority)").max(32).optional(),
  VALKEY_SERVER: z.string().optional(),
  /** The REST bridge's own connection (e.g. the bridge ACL user of `npm run acl`); default: VALKEY_URL's credentials. */
  BRIDGE_VALKEY_URL: z.string().regex(/^rediss?:\/\//, "BRIDGE_VALKEY_URL must start with redis:// or rediss://").optional(),
  VALKEY_DATA_DIR: z.string().default(".data/valkey"),
  VALKEY_PORT: z.coerce.number().int().min(0).max(65535).default(0),
  DEMO: bool.default(true),
  API_TOKEN: z.string().min(8, "API_TOKEN must be at least 8 characters").optional(),
  /** Bearer token of the read-only MCP tools (API_TOKEN opens them all). */
  API_READ_TOKEN: z.string().min(8, "API_READ_TOKEN must be at least 8 characters").optional(),
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
  /** Recent-runs index bound per partition (GET /v1/runs). */
  RECENT_RUNS_MAX: z.coerce.number().int().min(10).max(1_000_000).default(10_000),
  /** Ingest answers 429 while the entry stage's backlog (pending + undelivered) is at least this; 0 = off. */
  BACKPRESSURE_MAX_LAG: z.coerce.number().int().min(0).default(10_000),
  /** `on`: ingest answers 202 only once the server confirms the fsync (WAITAOF, else `appendfsync always`); checked at start. */
  DURABLE_ACCEPT: bool.default(false),
  /** How long ingest waits for the fsync confirmation before it answers 503 not_durable. */
  DURABLE_ACCEPT_TIMEOUT_MS: z.coerce.number().int().min(10).max(60_000).default(2000),
  /** Origins allowed to call write endpoints from a browser (comma-separated); reads allow any origin. */
  CORS_ORIGINS: z.string().optional(),
  /** `off` restricts GETs to CORS_ORIGINS too. */
  CORS_PUBLIC_READS: bool.default(true),
  /** Directory of the built web client served at `/` (`WEB_DIR=`, empty: serve none). */
  WEB_DIR: z.string().optional(),
  FEED_BUCKETS: z.coerce.number().int().min(1).max(4096).default(16),
  /** Largest request body of the public API, bytes (handed to the app). */
  MAX_BODY_BYTES: z.coerce.number().int().min(1024).max(1024 * 1024 * 1024).default(1024 * 1024),
  /** Largest body of a signed stage call, bytes (handed to the app). */
  STAGE_MAX_BODY_BYTES: z.coerce.number().int().min(1024).max(1024 * 1024 * 1024).default(32 * 1024 * 1024),
  /** How long an Idempotency-Key answers its first answer. */
  IDEMPOTENCY_TTL_SECONDS: z.coerce.number().int().min(60).max(30 * 24 * 3600).default(24 * 3600),
  /** How often the host moves due delayed runs to their streams, fires schedules and times out parked runs. */
  DUE_POLL_MS: z.coerce.number().int().min(20).max(60_000).default(250),
  /** OpenTelemetry (the standard variables): traces are exported over OTLP/HTTP only when the endpoint is set. */
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().url().optional(),
  OTEL_EXPORTER_OTLP_PROTOCOL: z.enum(["http/protobuf", "http/json"]).default("http/protobuf"),
  OTEL_EXPORTER_OTLP_HEADERS: z.string().optional(),
  OTEL_SERVICE_NAME: z.string().min(1).default("edgepipe-worker-host"),
});

export type HostConfig = z.infer<typeof HostConfig> & {
  /** The app's variables that are set (keys of its settings schema), as given: handed to its handlers. */
  appVars: Record<string, string>;
  /** `WEB_DIR=` was given empty: serve no web client. */
  webDisabled: boolean;
  /** The host variables that were set (the rest are defaults; cluster mode picks its own PARTITIONS and FEED_BUCKETS). */
  given: ReadonlySet<string>;
};

export interface LoadConfigOptions {
  /** The app's settings schema (`EdgeApp.settings`): checked with the host's variables, one error for all. */
  appSettings?: z.ZodObject<z.ZodRawShape>;
}

/** Parses the environment; throws one error listing every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, { appSettings }: LoadConfigOptions = {}): HostConfig {
  // An empty variable (`VALKEY_URL=`) means unset, as in most shells' habits
  // (WEB_DIR= excepted: it turns the web client off).
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== "")) as Record<string, string>;
  const parsed = HostConfig.safeParse(present);
  // The app's settings are validated with its own schema, so a bad value stops the host at start.
  const app = appSettings?.safeParse(present);
  if (!parsed.success || (app && !app.success)) {
    const issues = [...(parsed.success ? [] : parsed.error.issues), ...(app && !app.success ? app.error.issues : [])];
    const lines = issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join("\n")}`);
  }
  const appVars: Record<string, string> = {};
  for (const k of Object.keys(appSettings?.shape ?? {})) if (present[k] !== undefined) appVars[k] = present[k];
  const given = new Set(Object.keys(HostConfig.shape).filter((k) => present[k] !== undefined));
  return { ...parsed.data, appVars, webDisabled: env.WEB_DIR === "", given };
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
