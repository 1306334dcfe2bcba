/**
 * Delayed runs: `delayMs` / `runAt` on run start keep a run in its
 * partition's delayed set (enqueue-runs.lua) until promote-due.lua moves it
 * to its stream. The Node host calls promoteDue every DUE_POLL_MS; the
 * Workers cron calls it on each trigger. Any number of callers at once is
 * safe: each run moves exactly once.
 */
import { z } from "zod";
import type { Keys } from "./keys";
import { evalScript, type RedisClient } from "./redis";

/** The farthest a run may be delayed. */
export const MAX_DELAY_MS = 366 * 24 * 3600 * 1000;

/** Runs moved per partition and call (a larger backlog moves over the next calls). */
const PROMOTE_BATCH = 500;

/** Body of POST /v1/runs: payloads, an optional stage and priority, an optional delay (`delayMs` or `runAt`, not both). */
export function StartRunsBody<S extends z.ZodType<string>, P extends readonly [string, ...string[]]>(stage: S, priorities: P) {
  return z
    .object({
      stage: stage.optional(),
      /** The runs' lane at stages with priority lanes (flow control). */
      priority: z.enum(priorities).optional(),
      payloads: z.array(z.unknown()).min(1).max(500),
      /** Start the runs this many ms from now. */
      delayMs: z.number().int().min(0).max(MAX_DELAY_MS).optional(),
      /** Start the runs at this time (ISO 8601 or epoch ms). */
      runAt: z.union([z.string().datetime({ offset: true }), z.number().int().nonnegative()]).optional(),
    })
    .refine((b) => b.delayMs === undefined || b.runAt === undefined, { message: "give delayMs or runAt, not both", path: ["runAt"] })
    .refine((b) => b.runAt === undefined || toMs(b.runAt) <= Date.now() + MAX_DELAY_MS, { message: "runAt is more than 366 days ahead", path: ["runAt"] });
}

function toMs(runAt: string | number): number {
  return typeof runAt === "number" ? runAt : Date.parse(runAt);
}

/** Due time (epoch ms) of a start request, or 0 to start now (no delay, or a time already past). */
export function dueTime({ delayMs, runAt }: { delayMs?: number; runAt?: string | number }, now = Date.now()): number {
  const at = delayMs !== undefined ? now + delayMs : runAt !== undefined ? toMs(runAt) : 0;
  return at > now ? at : 0;
}

/** Moves every due delayed run to its stream (one script call per partition). Returns runs moved and the largest lateness. */
export async function promoteDue(redis: RedisClient, keys: Keys, now = Date.now()): Promise<{ moved: number; lateMs: number }> {
  const replies = await Promise.all(
    keys.allPartitions.map((p) =>
      evalScript<[number, number]>(redis, "promoteDue", [keys.delayed(p)], [keys.runKeyPrefix(p), keys.runLogPrefix(p), keys.streamKeyPrefix(p), now, PROMOTE_BATCH]),
    ),
  );
  return { moved: replies.reduce((s, r) => s + Number(r[0]), 0), lateMs: Math.max(0, ...replies.map((r) => Number(r[1]))) };
}

/** Delayed runs waiting, over every partition. */
export async function countDelayed(redis: RedisClient, keys: Keys): Promise<number> {
  const counts = await Promise.all(keys.allPartitions.map((p) => redis.zcard(keys.delayed(p))));
  return counts.reduce((s, n) => s + Number(n), 0);
}
