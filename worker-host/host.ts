/**
 * The worker-host: one StageWorker per pipeline stage, plus a periodic trim
 * of every stage stream down to what all groups have acknowledged.
 */
import { hostname } from "node:os";
import { randomHex } from "../functions/envelope";
import type { Keys } from "../functions/keys";
import type { Pipeline } from "../functions/pipeline";
import type { RedisClient } from "../functions/redis";
import { flowControlFor } from "./flow-control";
import type { Invoker } from "./invoker";
import { StageWorker, type StageHealth, type StageWorkerOptions } from "./stage-worker";
import { DueWork } from "./due-work";
import { isConnectionError, runScript, upstashOverValkey, withTimeout, type Connection } from "./valkey";

/** A stage and why /health calls it stuck. */
export interface StuckStage {
  stage: string;
  reason: string;
}

/** /health names a stage whose endpoint has given no answer this long. */
const DISPATCH_UNAVAILABLE_AFTER_MS = 2000;

export type WorkerTuning = Omit<StageWorkerOptions, "stage" | "keys" | "conn" | "invoker" | "consumer" | "log">;

export interface WorkerHostOptions {
  pipeline: Pipeline;
  keys: Keys;
  conn: Connection;
  invoker: Invoker;
  /** Consumer name; default host:pid:random. */
  consumer?: string;
  /** Only run these stages (default: all). */
  stages?: string[];
  tuning?: WorkerTuning;
  /** Soft cap per stage stream; acknowledged entries beyond it are trimmed. */
  streamMaxLen?: number;
  trimIntervalMs?: number;
  /** Consumers with nothing pending and idle this long are deleted from their group. */
  pruneConsumersIdleMs?: number;
  /** How often due delayed runs, schedule ticks and wait timeouts are handled (DUE_POLL_MS); 0: not on this host. */
  duePollMs?: number;
  /** The due loop's clock (tests run schedules on a faster one). */
  dueClock?: () => number;
  recentRunsMax?: number;
  log?: (line: string) => void;
  /** The app's environment (settings): flow key functions and limits given as functions read it. */
  env?: Record<string, unknown>;
}

export class WorkerHost {
  readonly consumer: string;
  readonly workers: StageWorker[];
  private trimTimer: ReturnType<typeof setInterval> | undefined;
  private trimming: Promise<unknown> | undefined;
  /** Delayed runs, schedules and wait timeouts (worker-host/due-work.ts); undefined with duePollMs 0. */
  readonly due: DueWork | undefined;

  constructor(private readonly options: WorkerHostOptions) {
    const { pipeline, keys, conn, invoker, tuning = {}, log = () => {} } = options;
    this.consumer = options.consumer ?? `${hostname()}:${process.pid}:${randomHex(3)}`;
    const stages = options.stages ?? [...pipeline.stages.keys()];
    this.workers = stages.map((stage) => {
      const visibilityMs = tuning.visibilityMs ?? 30_000;
      const flow = flowControlFor(pipeline.stages.get(stage), { stage, keys, conn, env: options.env, leaseMs: visibilityMs, recheckMs: Math.min(1000, visibilityMs), log });
      return new StageWorker({ ...tuning, stage, keys, conn, invoker, consumer: this.consumer, log, entry: stage === pipeline.entry, ...(flow ? { flow } : {}) });
    });
    const { duePollMs = 250 } = options;
    this.due =
      duePollMs > 0
        ? new DueWork({
            pipeline, keys, redis: (options.env?.REDIS as RedisClient | undefined) ?? upstashOverValkey(conn), pollMs: duePollMs, clock: options.dueClock, checkpointTtlSeconds: tuning.checkpointTtlSeconds, recentRunsMax: options.recentRunsMax, log,
          })
        : undefined;
  }

  /** Creates groups and starts every stage's loops. */
  async run(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.run()));
    this.due?.start();
    const { trimIntervalMs = 5000 } = this.options;
    this.trimTimer = setInterval(() => {
      if (this.trimming) return;
      // Connection trouble is reported by the connection itself, once per outage.
      const report = (err: Error) => void (isConnectionError(err) || this.options.log?.(`[host] trim failed: ${err.message}`));
      this.trimming = this.maintain().catch(report).finally(() => (this.trimming = undefined));
    }, trimIntervalMs);
    this.trimTimer.unref();
  }

  /** Periodic upkeep: trim streams, prune departed consumers. */
  private async maintain(): Promise<void> {
    await this.trimStreams();
    await this.pruneConsumers();
  }

  /** Deletes consumers that own no pending entries and have been idle past pruneConsumersIdleMs. */
  async pruneConsumers(): Promise<number> {
    const { keys, conn, pruneConsumersIdleMs = 3_600_000 } = this.options;
    let deleted = 0;
    for (const w of this.workers) {
      for (const p of keys.allPartitions) {
        deleted += Number(await runScript(conn, "pruneConsumers", [keys.stream(w.stage, p)], [keys.group(w.stage), pruneConsumersIdleMs, this.consumer]));
      }
    }
    return deleted;
  }

  /** Trims every stage stream to its safe point when it exceeds the soft cap. Returns entries removed. */
  async trimStreams(): Promise<number> {
    const { keys, conn, streamMaxLen = 10_000 } = this.options;
    let removed = 0;
    for (const w of this.workers) {
      for (const p of keys.allPartitions) removed += Number(await runScript(conn, "trimStream", [keys.stream(w.stage, p)], [streamMaxLen]));
    }
    return removed;
  }

  /**
   * Progress of every stage worker, and the stages that are stuck: no read
   * settled and no batch committed for the worker's stallAfterMs, while its
   * loop is not busy with its handlers (a healthy idle loop settles a read
   * every blockMs), or while it is busy but entries wait undelivered. Asks
   * the server for the backlog only of stages without recent progress.
   */
  async health(): Promise<{ stages: StageHealth[]; stuck: StuckStage[] }> {
    const { keys, conn } = this.options;
    const stages = this.workers.map((w) => w.health());
    const stuck: StuckStage[] = [];
    for (const h of stages) {
      // The stage endpoint (workerd) gives no answer: said at once, before the stall bound, with what is retried.
      if (h.dispatchUnavailableForMs !== undefined && h.dispatchUnavailableForMs >= DISPATCH_UNAVAILABLE_AFTER_MS) {
        stuck.push({
          stage: h.stage,
          reason: `stage endpoint gives no answer for ${Math.round(h.dispatchUnavailableForMs / 1000)} s (${h.dispatchError}); ${h.inFlight} batch(es) wait and retry, no delivery attempt used`,
        });
        continue;
      }
      if (h.msSinceProgress <= h.stallAfterMs) continue;
      let lag = 0;
      let pending = 0;
      for (const p of keys.allPartitions) {
        const backlog = await runScript<[number, number, number]>(conn, "streamBacklog", [keys.stream(h.stage, p)], [keys.group(h.stage)]);
        pending += Number(backlog[1]);
        lag += Math.max(0, Number(backlog[2]));
      }
      if (h.saturated && lag === 0) continue;
      const what = h.saturated ? `${h.inFlight} batch(es) in flight, none finished` : "no read settled and no batch committed";
      stuck.push({
        stage: h.stage,
        reason: `${what} for ${Math.round(h.msSinceProgress / 1000)} s; ${lag} entr(ies) undelivered, ${pending} pending${h.lastError ? `; last error: ${h.lastError}` : ""}`,
      });
    }
    return { stages, stuck };
  }

  /**
   * Graceful stop: stop reading, commit in-flight batches, each worker within
   * its closeTimeoutMs, and the whole stop by `deadline` (epoch ms) when one
   * is given: what cannot commit by then stays pending, reclaimed by another
   * consumer after the visibility timeout.
   */
  async close({ deadline }: { deadline?: number } = {}): Promise<void> {
    if (this.trimTimer) clearInterval(this.trimTimer);
    const left = (cap: number) => Math.max(0, Math.min(cap, (deadline ?? Infinity) - Date.now()));
    // The due round and the stage workers stop side by side: neither waits for the other.
    const results = await Promise.allSettled([this.due?.close(left(1000)), ...this.workers.map((w) => w.close({ deadline }))]);
    for (const r of results) if (r.status === "rejected") this.options.log?.(`[host] worker close failed: ${r.reason}`);
    try {
      if (this.trimming) await withTimeout(this.trimming, left(500), "stream trim");
    } catch {
      // logged by the trim timer, or left to finish on its own
    }
  }
}
