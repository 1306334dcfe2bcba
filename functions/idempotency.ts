/**
 * Idempotency keys (the IETF httpapi `Idempotency-Key` draft, as Stripe does)
 * for routes that start runs: the first request with a key claims it
 * (claim-idempotency.lua) together with the run ids it will start; a repeat
 * with the same body answers the first answer (`Idempotent-Replayed: true`),
 * waiting for it while the first is still in flight; another body under the
 * same key is a 422. A claim whose request died before answering is taken
 * over after a short lease with the same run ids, which enqueue-runs.lua
 * starts at most once, so no crash point can start a second set of runs.
 */
import type { Context, TypedResponse } from "hono";
import type { JSONParsed } from "hono/utils/types";
import { settingsFor } from "./config";
import { apiError } from "./http";
import { evalScript, redisFromEnv, type AppEnv } from "./redis";
import { canonicalJson, sha256Hex } from "./tools/cache";

/** The request header. */
export const IDEMPOTENCY_HEADER = "Idempotency-Key";
/** Set on an answer that repeats a stored one. */
export const REPLAYED_HEADER = "Idempotent-Replayed";
/** A claim unanswered this long is taken over by a repeat (its request is presumed dead). */
export const IDEMPOTENCY_LEASE_MS = 10_000;
/** A repeat waits this long at most for the first request's answer before answering 409. */
const WAIT_FOR_ANSWER_MS = 15_000;

/** What `idempotent` answers: the route's 202 body, or an error (400 bad key, 409 in flight, 422 reused). */
export type IdempotentAnswer<B> =
  | (Response & TypedResponse<JSONParsed<B>, 202, "json">)
  | ReturnType<typeof apiError>;

const KEY_PATTERN = /^[\x21-\x7e]{1,255}$/;


const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function parseMaybeJson(v: unknown): unknown {
  if (typeof v !== "string") return v;
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
}

/**
 * Runs `start` at most once per Idempotency-Key of this route (`scope`),
 * whatever the number of repeats, hosts and crashes. `runIds` are the ids
 * the request would start; `start` receives the ids to use (those of the
 * first claim when it takes over a dead one) and must start them once-only
 * (startRuns `onceWithinMs`). Without the header, `start` runs with `runIds`.
 * Every answer it stores and replays is a 202.
 * @example
 * return idempotent(c, "runs", body, ids, async (ids) => ({ accepted: ids.length, runIds: await start(ids) }));
 */
export async function idempotent<B extends { runIds: string[] }>(
  c: Context<{ Bindings: AppEnv }>,
  scope: string,
  requestBody: unknown,
  runIds: string[],
  start: (runIds: string[]) => Promise<B>,
): Promise<IdempotentAnswer<B>> {
  const key = c.req.header(IDEMPOTENCY_HEADER);
  if (key === undefined) return c.json(await start(runIds), 202);
  if (!KEY_PATTERN.test(key)) {
    return apiError(c, 400, "validation_failed", `${IDEMPOTENCY_HEADER} must be 1-255 visible ASCII characters`, [{ path: IDEMPOTENCY_HEADER, message: "1-255 visible ASCII characters" }]);
  }
  const { keys, settings } = settingsFor(c.env);
  const redis = redisFromEnv(c.env ?? {});
  const recordKey = keys.idempotency(scope, await sha256Hex(key));
  const bodyHash = await sha256Hex(canonicalJson(requestBody));
  const deadline = Date.now() + WAIT_FOR_ANSWER_MS;
  for (let wait = 25; ; wait = Math.min(wait * 2, 250)) {
    const reply = await evalScript<unknown[]>(redis, "claimIdempotency", [recordKey], [bodyHash, Date.now(), IDEMPOTENCY_LEASE_MS, settings.IDEMPOTENCY_TTL_SECONDS, JSON.stringify(runIds)]);
    const verdict = String(reply[0]);
    if (verdict === "claimed") {
      const ids = parseMaybeJson(reply[1]);
      let answer: B;
      try {
        answer = await start(Array.isArray(ids) ? ids.map(String) : runIds);
      } catch (err) {
        // Refused under backpressure, nothing of the batch was written: a repeat starts afresh instead of
        // waiting out the lease. Any other failure may have started some runs: the claim stays, and a
        // repeat takes it over after the lease with the same run ids.
        if (err instanceof Error && err.name === "BackpressureError") await redis.del(recordKey).catch(() => undefined);
        throw err;
      }
      await redis.hset(recordKey, { state: "done", status: "202", body: JSON.stringify(answer) });
      return c.json(answer, 202);
    }
    if (verdict === "replay") {
      c.header(REPLAYED_HEADER, "true");
      return c.json(parseMaybeJson(reply[2]) as B, 202);
    }
    if (verdict === "mismatch") {
      return apiError(c, 422, "idempotency_key_reused", `${IDEMPOTENCY_HEADER} ${JSON.stringify(key)} was used with another request body within its window (${settings.IDEMPOTENCY_TTL_SECONDS} s); send a new key for a new request`);
    }
    // busy: the first request with this key is still starting its runs.
    if (Date.now() + wait > deadline) {
      c.header("Retry-After", "1");
      return apiError(c, 409, "idempotency_key_in_flight", `a request with ${IDEMPOTENCY_HEADER} ${JSON.stringify(key)} is still in flight; retry shortly`);
    }
    await sleep(wait);
  }
}
