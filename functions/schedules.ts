/**
 * Cron schedules of a pipeline (`definePipeline({ schedules })`). Each tick
 * of a schedule is one run whose id is derived from the schedule's name and
 * the tick's minute, started once-only (enqueue-runs.lua): every host's due
 * loop and the Workers cron may fire the same tick, at the same moment or
 * late, and exactly one run starts.
 */
import { settingsFor } from "./config";
import { promoteDue } from "./delayed";
import { expireWaits } from "./wait-for";
import type { Keys } from "./keys";
import type { Pipeline, Schedule } from "./pipeline";
import type { AppEnv, RedisClient } from "./redis";
import { startRunsReport } from "./runs";

/** The run id of a schedule's tick: `s-<name>-<minute since epoch, base 36>`. */
export function scheduleRunId(name: string, tickMs: number): string {
  return `s-${name}-${Math.floor(tickMs / 60_000).toString(36)}`;
}

/** Ticks fired per schedule and call at most (the newest, after a long pause). */
const MAX_TICKS_PER_CALL = 10;

export interface FireReport {
  /** Runs this call started (ticks fired by this caller). */
  fired: number;
  /** Ticks that another caller (host or cron) had fired already. */
  alreadyFired: number;
  runIds: string[];
}

/**
 * Fires every tick of every schedule in (sinceMs, now]: one once-only run
 * per tick. Safe to call from any number of hosts at once.
 */
export async function fireSchedules(redis: RedisClient, keys: Keys, pipeline: Pipeline, { sinceMs, now = Date.now(), ttlSeconds = 7 * 24 * 3600, recentRunsMax }: { sinceMs: number; now?: number; ttlSeconds?: number; recentRunsMax?: number }): Promise<FireReport> {
  const report: FireReport = { fired: 0, alreadyFired: 0, runIds: [] };
  await Promise.all(
    pipeline.schedules.map(async (schedule: Schedule) => {
      const ticks = schedule.parsed.ticksBetween(sinceMs, now, MAX_TICKS_PER_CALL);
      if (ticks.length === 0) return;
      const runIds = ticks.map((t) => scheduleRunId(schedule.name, t));
      const payloads = ticks.map((t) => schedule.payload ?? { schedule: schedule.name, tick: new Date(t).toISOString() });
      const { outcomes } = await startRunsReport(redis, payloads, { keys, pipeline, stage: schedule.stage, runIds, onceWithinMs: ttlSeconds * 1000, ttlSeconds, recentRunsMax });
      outcomes.forEach((o, i) => {
        if (o === "existing") report.alreadyFired++;
        else {
          report.fired++;
          report.runIds.push(runIds[i]);
        }
      });
    }),
  );
  return report;
}

/** When each schedule fires next (for /v1/stats and the dashboard). */
export function nextTicks(pipeline: Pipeline, now = Date.now()): Array<{ name: string; cron: string; next: string | null }> {
  return pipeline.schedules.map((s) => {
    const next = s.parsed.next(now);
    return { name: s.name, cron: s.cron, next: next === null ? null : new Date(next).toISOString() };
  });
}

/** How far back the Workers cron fires missed ticks: a cron trigger every 5 minutes still fires each tick once. */
export const EDGE_CATCH_UP_MS = 15 * 60_000;

/**
 * The framework's part of a Workers cron trigger: delayed runs that are due
 * move to their streams, parked runs past their timeout move on, and the
 * pipeline's schedule ticks of the last EDGE_CATCH_UP_MS fire (each once,
 * however often this and the hosts run).
 */
export async function runDueWork(env: AppEnv, pipeline: Pipeline, redis: RedisClient, now = Date.now()): Promise<FireReport & { moved: number; timedOut: number }> {
  const { keys, settings } = settingsFor(env);
  const [promoted, fired, timedOut] = await Promise.all([
    promoteDue(redis, keys, now),
    fireSchedules(redis, keys, pipeline, { sinceMs: now - EDGE_CATCH_UP_MS, now, ttlSeconds: settings.CHECKPOINT_TTL_SECONDS, recentRunsMax: settings.RECENT_RUNS_MAX }),
    expireWaits(redis, keys, pipeline, now, settings.CHECKPOINT_TTL_SECONDS),
  ]);
  return { ...fired, moved: promoted.moved, timedOut };
}
