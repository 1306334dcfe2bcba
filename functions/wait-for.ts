/**
 * Waiting for an event (human in the loop): a handler returns
 * `{ waitFor: { event, timeoutMs?, to?, onTimeout? } }`; the worker-host parks
 * the run (park-runs.lua: acked, no consumer held, a parked record and a
 * place in the partition's parked set); `POST /v1/runs/:runId/events/:event`
 * resumes it (resume-run.lua) with the event's data as the next stage's
 * input; past its timeout the due loop (or the Workers cron) moves it to its
 * timeout step or dead-letters it (expire-waits.lua).
 */
import { z } from "zod";
import type { Keys } from "./keys";
import type { Pipeline } from "./pipeline";
import { evalScript, type RedisClient } from "./redis";

/** Event names: 1-64 of a-z, 0-9, '_' and '-', starting with a letter (they appear in keys' fields and URLs). */
export const EventName = z.string().regex(/^[a-z][a-z0-9_-]{0,63}$/, "event names are 1-64 chars of a-z, 0-9, '_' and '-', starting with a letter");

/** The longest wait a handler may declare. */
export const MAX_WAIT_MS = 366 * 24 * 3600 * 1000;

/** Runs timed out per partition and call. */
const EXPIRE_BATCH = 500;

export type ResumeResult =
  | { ok: true; runId: string; event: string; to: string }
  | { ok: false; code: "not_found" | "not_waiting"; message: string };

/**
 * Resumes a run waiting for `event`, with `data` as the payload of its next
 * stage. Refused (not_waiting) when the run waits for nothing, or for another event.
 */
export async function resumeRun(redis: RedisClient, keys: Keys, { runId, event, data }: { runId: string; event: string; data: unknown }): Promise<ResumeResult> {
  const runKey = keys.run(runId);
  const wait = await redis.hmget<Record<string, unknown>>(runKey, "status", "wait_event", "wait_to", "wait_trace", "wait_branch");
  if (!wait || wait.status === null || wait.status === undefined) return { ok: false, code: "not_found", message: `no run ${runId} (unknown or expired)` };
  if (wait.status !== "waiting" || String(wait.wait_event) !== event) {
    const now = wait.status === "waiting" ? `waits for event ${String(wait.wait_event)}` : `is ${String(wait.status)}`;
    return { ok: false, code: "not_waiting", message: `run ${runId} is not waiting for event ${event}: it ${now}` };
  }
  const to = String(wait.wait_to);
  const p = keys.partitionOf(runId);
  const json = JSON.stringify(data ?? null);
  const branch = wait.wait_branch ? String(wait.wait_branch) : "";
  const envelope = { runId, stage: to, attempt: 1, traceId: String(wait.wait_trace), createdAt: Date.now(), ...(branch ? { branch } : {}), payload: data ?? null };
  const reply = await evalScript<unknown[]>(redis, "resumeRun", [runKey, keys.runLog(runId), keys.parked(p), keys.stream(to, p)], [event, Date.now(), to, JSON.stringify(envelope), runId, json.length]);
  if (Number(reply[0]) !== 1) return { ok: false, code: "not_waiting", message: `run ${runId} is no longer waiting for event ${event} (it resumed or timed out meanwhile)` };
  return { ok: true, runId, event, to };
}

/** Moves on every parked run past its timeout (one script call per partition). Returns how many moved (timeout step or dead letter). */
export async function expireWaits(redis: RedisClient, keys: Keys, _pipeline: Pipeline, now = Date.now(), ttlSeconds = 7 * 24 * 3600): Promise<number> {
  const replies = await Promise.all(
    keys.allPartitions.map((p) =>
      evalScript<[number, number]>(redis, "expireWaits", [keys.parked(p)], [keys.runKeyPrefix(p), keys.runLogPrefix(p), keys.streamKeyPrefix(p), keys.deadLettersPrefix(p), keys.statsPrefix(p), now, EXPIRE_BATCH, ttlSeconds]),
    ),
  );
  return replies.reduce((s, r) => s + Number(r[0]) + Number(r[1]), 0);
}

/** Parked runs of one partition, oldest timeout first (the run inspector lists them). */
export async function listParked(redis: RedisClient, keys: Keys, { limit = 50 }: { limit?: number } = {}): Promise<Array<{ runId: string; timeoutAt: number | null }>> {
  const parts = await Promise.all(keys.allPartitions.map((p) => redis.zrange(keys.parked(p), 0, limit - 1, { withScores: true }) as Promise<Array<string | number>>));
  const out: Array<{ runId: string; timeoutAt: number | null }> = [];
  for (const flat of parts) for (let i = 0; i < flat.length; i += 2) out.push({ runId: String(flat[i]), timeoutAt: Number.isFinite(Number(flat[i + 1])) ? Number(flat[i + 1]) : null });
  return out.slice(0, limit);
}
