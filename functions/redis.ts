/**
 * Valkey access for handlers and the HTTP app: the @upstash/redis client API
 * everywhere. On Workers it speaks HTTP to UPSTASH_REDIS_REST_URL (Upstash or
 * the worker-host's REST bridge); in-process on Node the worker-host injects a
 * client whose Requester runs commands over iovalkey (env.REDIS).
 */
import { Redis } from "@upstash/redis/cloudflare";
import { LUA } from "./lua.generated";
import type { SpanSink } from "./tracing";

/** The client type handlers see (same API on Workers and in-process). */
export type RedisClient = Pick<Redis, keyof Redis>;
export type ScriptName = keyof typeof LUA;

/**
 * Bindings and variables the framework reads (Workers env, or the Node host's
 * env object); an app's own variables ride along under the index signature.
 * (The news Worker's full bindings, generated from wrangler.toml by `npm run
 * gen:types`, are `Env` in functions/worker-configuration.d.ts; the framework
 * does not extend them, so it carries no app's variables and its published
 * types need no generated global.)
 */
export interface AppEnv {
  UPSTASH_REDIS_REST_URL?: string;
  UPSTASH_REDIS_REST_TOKEN?: string;
  /** Injected in-process by the worker-host: a client over iovalkey. */
  REDIS?: RedisClient;
  /** Set by the worker-host for in-process dispatch (no HTTP, so no signature). */
  IN_PROCESS?: boolean;
  KEY_PREFIX?: string;
  PARTITIONS?: string;
  FEED_BUCKETS?: string;
  CHECKPOINT_TTL_SECONDS?: string;
  API_TOKEN?: string;
  /** Opens the read-only MCP tools (API_TOKEN opens them all). */
  API_READ_TOKEN?: string;
  STAGE_SIGNING_KEYS?: string;
  /** Injected in-process by a tracing worker-host: takes the handlers' spans (functions/tracing.ts). */
  SPAN_SINK?: SpanSink;
  [key: string]: unknown;
}

/** Returns the Valkey client for this request's environment. */
export function redisFromEnv(env: AppEnv): RedisClient {
  if (env.REDIS) return env.REDIS;
  if (!env.UPSTASH_REDIS_REST_URL || !env.UPSTASH_REDIS_REST_TOKEN) {
    throw new Error("no Valkey client: set UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN");
  }
  return new Redis({
    url: env.UPSTASH_REDIS_REST_URL,
    token: env.UPSTASH_REDIS_REST_TOKEN,
    enableTelemetry: false,
    enableAutoPipelining: true,
    // A few quick retries; callers (health, the stage worker) have their own recovery.
    retry: { retries: 2, backoff: (n: number) => 50 * 2 ** n },
  });
}

/**
 * Runs a script from lua/ through the @upstash/redis client:
 * EVALSHA, falling back to EVAL on NOSCRIPT.
 */
export async function evalScript<T = unknown>(
  redis: RedisClient,
  name: ScriptName,
  keys: string[],
  args: Array<string | number>,
): Promise<T> {
  const script = LUA[name];
  const argv = args.map(String);
  try {
    return (await redis.evalsha(script.sha, keys, argv)) as T;
  } catch (err) {
    if (!(err instanceof Error) || !err.message.includes("NOSCRIPT")) throw err;
    return (await redis.eval(script.source, keys, argv)) as T;
  }
}
