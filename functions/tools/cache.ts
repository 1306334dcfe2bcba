/**
 * The tool cache: results of expensive or rate-limited calls (LLM, feed
 * fetches, enrichment) stored under `tool:cache:<tool>:<sha-256 of canonical
 * JSON args>` with a per-tool TTL. A single-flight lock makes N concurrent
 * misses call the tool once: the lock holder calls it, the others poll the
 * cache, and call the tool themselves only after the lock expired (a crashed
 * holder never deadlocks anyone). Errors are never cached as results; an
 * optional short negative cache remembers them briefly.
 */
import type { Keys } from "../keys";
import type { RedisClient } from "../redis";
import { randomHex } from "../envelope";
import { sha256HexSync } from "./sha256";
import type { ActiveSpan, TraceScope } from "../tracing";

/** JSON with object keys sorted at every level, so equal args hash equally. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

/**
 * Lowercase hex SHA-256 of a UTF-8 string. Computed synchronously in plain
 * JS (functions/tools/sha256.ts: cheaper than a WebCrypto job for short
 * inputs); async for the callers written against WebCrypto.
 */
export async function sha256Hex(text: string): Promise<string> {
  return sha256HexSync(text);
}

/** A tool failure remembered by the negative cache. */
export class CachedToolError extends Error {
  constructor(tool: string, message: string) {
    super(`${tool} failed recently (negative cache): ${message}`);
    this.name = "CachedToolError";
  }
}

export interface CachedToolOptions<T> {
  /** Tool name: lowercase, used in the key. */
  tool: string;
  /** The call's arguments; the cache key is the SHA-256 of their canonical JSON. */
  args: unknown;
  /** How long a result stays cached. */
  ttlSeconds: number;
  /** The real call (it gets the tool's span when traced, for spans of its own). Its result must be JSON-serializable. */
  fn: (span?: TraceScope) => Promise<T> | T;
  /** Lock lifetime: the longest a call may take before waiters give up waiting. */
  lockMs?: number;
  /** How often waiters look at the cache. */
  pollMs?: number;
  /** When > 0, a failure is remembered this long and rethrown to callers without calling the tool. */
  negativeTtlSeconds?: number;
  /**
   * The handler's trace (`ctx.trace`): the call becomes a `tool <name>` span with
   * `edgepipe.tool.cache` hit or miss, and a `lock wait` child while it waited on another caller.
   */
  trace?: TraceScope;
}

export interface CachedToolResult<T> {
  value: T;
  /** True when the value came from the cache (including after waiting on another caller). */
  hit: boolean;
}

type Stored<T> = { v: T } | { e: string };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function decode<T>(raw: unknown): Stored<T> | undefined {
  if (raw === null || raw === undefined) return undefined;
  // @upstash/redis already parses JSON strings; a raw transport may not.
  const obj = typeof raw === "string" ? (JSON.parse(raw) as unknown) : raw;
  if (typeof obj === "object" && obj !== null && ("v" in obj || "e" in obj)) return obj as Stored<T>;
  return undefined;
}

/**
 * Calls `fn` through the cache.
 * @example
 * const { value, hit } = await cachedTool(redis, keys, {
 *   tool: "summarize", args: { text }, ttlSeconds: 3600, fn: () => summarize(text),
 * });
 */
export async function cachedTool<T>(redis: RedisClient, keys: Keys, options: CachedToolOptions<T>): Promise<CachedToolResult<T>> {
  if (!options.trace) return callThroughCache(redis, keys, options, undefined);
  return options.trace.span(`tool ${options.tool}`, (span) => callThroughCache(redis, keys, options, span), { "edgepipe.tool": options.tool });
}

async function callThroughCache<T>(
  redis: RedisClient,
  keys: Keys,
  { tool, args, ttlSeconds, fn, lockMs = 10_000, pollMs = 25, negativeTtlSeconds = 0 }: CachedToolOptions<T>,
  span: ActiveSpan | undefined,
): Promise<CachedToolResult<T>> {
  const argsHash = await sha256Hex(canonicalJson(args));
  const cacheKey = keys.toolCache(tool, argsHash);
  const lockKey = keys.toolLock(tool, argsHash);
  const token = `t${randomHex(8)}`;

  const served = (stored: Stored<T>): CachedToolResult<T> => {
    span?.setAttribute("edgepipe.tool.cache", "hit");
    if ("e" in stored) throw new CachedToolError(tool, stored.e);
    return { value: stored.v, hit: true };
  };

  // The lock holder calls the tool and stores the result. On success it keeps
  // the lock until it expires: a caller that missed the cache a moment before
  // the result landed then waits for it instead of calling the tool again.
  const callAndStore = async (holdsLock: boolean): Promise<CachedToolResult<T>> => {
    span?.setAttribute("edgepipe.tool.cache", "miss");
    let value: T;
    try {
      value = await fn(span);
    } catch (err) {
      const pipe = redis.pipeline();
      pipe.hincrby(keys.counters(), "tool_cache_misses", 1);
      if (negativeTtlSeconds > 0) pipe.set(cacheKey, JSON.stringify({ e: (err as Error).message ?? String(err) }), { ex: negativeTtlSeconds });
      await pipe.exec();
      // Release our lock (only ours: it may have expired and been taken) so waiters retry at once.
      if (holdsLock && String(await redis.get(lockKey)) === token) await redis.del(lockKey);
      throw err;
    }
    const pipe = redis.pipeline();
    pipe.set(cacheKey, JSON.stringify({ v: value }), { ex: ttlSeconds });
    pipe.hincrby(keys.counters(), "tool_cache_misses", 1);
    await pipe.exec();
    return { value, hit: false };
  };

  const deadline = Date.now() + lockMs;
  for (;;) {
    // One round trip: the cached value, and the lock in case there is none.
    const first = redis.pipeline();
    first.get(cacheKey);
    first.set(lockKey, token, { nx: true, px: lockMs });
    const [raw, locked] = (await first.exec()) as [unknown, unknown];
    const stored = decode<T>(raw);
    if (stored) {
      const pipe = redis.pipeline();
      pipe.hincrby(keys.counters(), "tool_cache_hits", 1);
      if (locked === "OK") pipe.del(lockKey);
      await pipe.exec();
      return served(stored);
    }
    if (locked === "OK") return callAndStore(true);
    // Someone else is calling the tool: wait for its result, or for its lock to go.
    const waitForHolder = async (): Promise<Stored<T> | undefined> => {
      while (Date.now() < deadline) {
        await sleep(pollMs);
        const poll = redis.pipeline();
        poll.get(cacheKey);
        poll.exists(lockKey);
        const [value, lockExists] = (await poll.exec()) as [unknown, unknown];
        const hit = decode<T>(value);
        if (hit) return hit;
        if (Number(lockExists) === 0) return undefined;
      }
      return undefined;
    };
    const waitStart = span ? Date.now() : 0;
    const hit = span ? await span.span("lock wait", waitForHolder) : await waitForHolder();
    span?.setAttribute("edgepipe.tool.lock_wait_ms", (span ? Date.now() : 0) - waitStart);
    if (hit) {
      await redis.hincrby(keys.counters(), "tool_cache_hits", 1);
      return served(hit);
    }
    // A holder that never finishes must not block us forever.
    if (Date.now() >= deadline) return callAndStore(false);
  }
}
