/**
 * Per-tool token bucket (lua/rate-limit.lua), shared by every handler and
 * host, so an LLM endpoint or a feed host is not hammered.
 */
import type { Keys } from "../keys";
import { evalScript, type RedisClient } from "../redis";
import { StageError } from "../pipeline";

export interface RateLimit {
  /** Burst size, tokens. */
  burst: number;
  /** Refill, tokens per second. */
  perSecond: number;
}

/** Tries to take one token now; `{ granted, waitMs }`. */
export async function tryTakeToken(redis: RedisClient, keys: Keys, tool: string, { burst, perSecond }: RateLimit, now = Date.now()): Promise<{ granted: boolean; waitMs: number }> {
  const [granted, waitMs] = await evalScript<[number, number]>(redis, "rateLimit", [keys.toolRate(tool)], [burst, perSecond, now, 1]);
  return { granted: Number(granted) === 1, waitMs: Number(waitMs) };
}

/**
 * Waits for a token of `tool`, up to `maxWaitMs`; then throws a retryable
 * StageError (the envelope is redelivered later instead of blocking a batch).
 */
export async function takeToken(redis: RedisClient, keys: Keys, tool: string, limit: RateLimit, { maxWaitMs = 5000 }: { maxWaitMs?: number } = {}): Promise<void> {
  const deadline = Date.now() + maxWaitMs;
  for (;;) {
    const { granted, waitMs } = await tryTakeToken(redis, keys, tool, limit);
    if (granted) return;
    if (Date.now() + waitMs > deadline) throw new StageError(`${tool} is rate limited (${limit.perSecond}/s); try again later`, { retryable: true });
    await new Promise((r) => setTimeout(r, Math.max(5, waitMs)));
  }
}
