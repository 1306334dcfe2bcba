/**
 * The host's due loop: every DUE_POLL_MS it moves due delayed runs to their
 * streams (promote-due.lua) and fires the pipeline's schedule ticks
 * (once-only runs), and times out parked runs. Every step is one script call
 * per partition that any number of hosts may make at once, so running it on
 * every host is what makes it highly available, not a hazard.
 */
import { promoteDue } from "../functions/delayed";
import type { Keys } from "../functions/keys";
import type { Pipeline } from "../functions/pipeline";
import type { RedisClient } from "../functions/redis";
import { fireSchedules } from "../functions/schedules";
import { expireWaits } from "../functions/wait-for";
import { isConnectionError, withTimeout } from "./valkey";

export interface DueWorkOptions {
  pipeline: Pipeline;
  keys: Keys;
  redis: RedisClient;
  pollMs?: number;
  checkpointTtlSeconds?: number;
  recentRunsMax?: number;
  /** Ticks missed while no host ran are fired when they are at most this old (default one minute). */
  catchUpMs?: number;
  /** The clock (tests run schedules on a faster one). */
  clock?: () => number;
  log?: (line: string) => void;
}

export interface DueWorkFigures {
  /** Delayed runs this host moved to their streams. */
  promoted: number;
  /** Largest lateness of a promoted run, ms (due time to its move). */
  maxLateMs: number;
  /** Schedule ticks this host fired (another host or the cron fired the rest). */
  fired: number;
  alreadyFired: number;
  /** Parked runs this host moved on past their timeout. */
  timedOut: number;
}

export class DueWork {
  readonly figures: DueWorkFigures = { promoted: 0, maxLateMs: 0, fired: 0, alreadyFired: 0, timedOut: 0 };
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running = false;
  private busy: Promise<void> | undefined;
  private since: number;
  private readonly clock: () => number;

  constructor(private readonly o: DueWorkOptions) {
    this.clock = o.clock ?? Date.now;
    this.since = this.clock() - (o.catchUpMs ?? 60_000);
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule();
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.busy = this.pollOnce()
        .catch((err) => {
          if (!isConnectionError(err)) this.o.log?.(`[due] ${(err as Error).message}`);
        })
        .finally(() => {
          this.busy = undefined;
          this.schedule();
        });
    }, this.o.pollMs ?? 250);
    this.timer.unref?.();
  }

  /** One round: promote due delayed runs, fire due schedule ticks, time out parked runs. */
  async pollOnce(): Promise<void> {
    const { redis, keys, pipeline } = this.o;
    const now = this.clock();
    const [promoted, fired, timedOut] = await Promise.all([
      promoteDue(redis, keys, now),
      pipeline.schedules.length > 0
        ? fireSchedules(redis, keys, pipeline, { sinceMs: this.since, now, ttlSeconds: this.o.checkpointTtlSeconds, recentRunsMax: this.o.recentRunsMax })
        : undefined,
      // Waits time out on the real clock (a faster test clock is for schedules).
      expireWaits(redis, keys, pipeline, Date.now(), this.o.checkpointTtlSeconds),
    ]);
    this.figures.timedOut += timedOut;
    this.since = now;
    this.figures.promoted += promoted.moved;
    this.figures.maxLateMs = Math.max(this.figures.maxLateMs, promoted.lateMs);
    if (fired) {
      this.figures.fired += fired.fired;
      this.figures.alreadyFired += fired.alreadyFired;
    }
  }

  /** The clock time up to which schedule ticks have been fired: the `now` of the last round that finished. */
  get coveredUntil(): number {
    return this.since;
  }

  /** Stops the loop; waits for the round in progress at most `timeoutMs` (its scripts are atomic, so one cut short leaves nothing half done). */
  async close(timeoutMs = 1000): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    if (this.busy) await withTimeout(this.busy, Math.max(0, timeoutMs), "due round").catch(() => undefined);
  }
}
