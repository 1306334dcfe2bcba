/**
 * The worker-host: one StageWorker per pipeline stage, plus a periodic trim
 * of every stage stream down to what all groups have acknowledged.
 */
import { hostname } from "node:os";
import { randomHex } from "../functions/envelope";
import type { Keys } from "../functions/keys";
import type { Pipeline } from "../functions/pipeline";
import type { Invoker } from "./invoker";
import { StageWorker, type StageWorkerOptions } from "./stage-worker";
import { runScript, type Connection } from "./valkey";

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
  log?: (line: string) => void;
}

export class WorkerHost {
  readonly consumer: string;
  readonly workers: StageWorker[];
  private trimTimer: ReturnType<typeof setInterval> | undefined;
  private trimming: Promise<unknown> | undefined;

  constructor(private readonly options: WorkerHostOptions) {
    const { pipeline, keys, conn, invoker, tuning = {}, log = () => {} } = options;
    this.consumer = options.consumer ?? `${hostname()}:${process.pid}:${randomHex(3)}`;
    const stages = options.stages ?? [...pipeline.stages.keys()];
    this.workers = stages.map((stage) => new StageWorker({ ...tuning, stage, keys, conn, invoker, consumer: this.consumer, log }));
  }

  /** Creates groups and starts every stage's loops. */
  async run(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.run()));
    const { trimIntervalMs = 5000 } = this.options;
    this.trimTimer = setInterval(() => {
      if (!this.trimming) this.trimming = this.maintain().catch((err) => this.options.log?.(`[host] trim failed: ${(err as Error).message}`)).finally(() => (this.trimming = undefined));
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

  /** Graceful stop: stop reading, finish and commit in-flight batches. */
  async close(): Promise<void> {
    if (this.trimTimer) clearInterval(this.trimTimer);
    const results = await Promise.allSettled(this.workers.map((w) => w.close()));
    for (const r of results) if (r.status === "rejected") this.options.log?.(`[host] worker close failed: ${r.reason}`);
    try {
      await this.trimming;
    } catch {
      // logged above
    }
  }
}
