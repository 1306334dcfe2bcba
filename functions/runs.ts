/**
 * Starting runs and reading them back: checkpoint hash + activity log, and
 * the recent-runs list (GET /v1/runs).
 */
import { newEnvelope, type Envelope, type Priority, type TraceParent } from "./envelope";
import type { Keys } from "./keys";
import type { Pipeline } from "./pipeline";
import { evalScript, type RedisClient } from "./redis";

export interface StartRunsOptions {
  keys: Keys;
  pipeline: Pipeline;
  /** Stage to start at (default: the pipeline's entry). */
  stage?: string;
  ttlSeconds?: number;
  /** Fixed run ids (same length as payloads); generated when omitted. */
  runIds?: string[];
  /** Priority lane of the runs (default normal): stages with `lanes` serve higher lanes first. */
  priority?: Priority;
  /** Recent-runs index bound per partition (settings RECENT_RUNS_MAX). */
  recentRunsMax?: number;
  /**
   * Backpressure (settings BACKPRESSURE_MAX_LAG): refuse the batch with a
   * BackpressureError when the stage's backlog (pending + undelivered) is at
   * or above this. 0 or omitted: no check.
   */
  maxBacklog?: number;
  /**
   * Once-only window, ms: a run id (of `runIds`) whose run started within it
   * is not started again, and answers as it is (idempotency keys, article
   * ids, schedule ticks). 0 (default): always start.
   */
  onceWithinMs?: number;
  /** Start later: epoch ms when the runs are due (held in the partition's delayed set until then). */
  runAt?: number;
  /** The caller's trace (its `traceparent` header): the runs join it. */
  trace?: TraceParent;
}

/** Default backlog limit of ingest (settings BACKPRESSURE_MAX_LAG). */
export const BACKPRESSURE_MAX_LAG = 10_000;

/** Seconds a refused producer is told to wait (the Retry-After of a 429). */
export const BACKPRESSURE_RETRY_AFTER_SECONDS = 1;

/**
 * A batch refused because its stage is behind: nothing of it was written.
 * Ingest routes answer it with 429 and Retry-After.
 */
export class BackpressureError extends Error {
  readonly retryAfterSeconds = BACKPRESSURE_RETRY_AFTER_SECONDS;
  constructor(
    readonly stage: string,
    /** Entries waiting (pending + undelivered), counted at least up to the limit. */
    readonly backlog: number,
    readonly limit: number,
  ) {
    super(`stage ${stage} is behind: ${backlog} entries wait (limit ${limit}, BACKPRESSURE_MAX_LAG); nothing of this batch was accepted, retry after ${BACKPRESSURE_RETRY_AFTER_SECONDS} s`);
    this.name = "BackpressureError";
  }
}

/** Default bound of each partition's recent-runs index. */
export const RECENT_RUNS_MAX = 10_000;

/**
 * Starts one run per payload: checkpoint "running", a log entry, the first
 * envelope on the entry stage's stream and an entry in the partition's
 * recent-runs index, one script call per partition.
 * Returns the run ids in input order.
 */
export async function startRuns(redis: RedisClient, payloads: unknown[], options: StartRunsOptions): Promise<string[]> {
  return (await startRunsReport(redis, payloads, options)).runIds;
}

/** What startRunsReport did: per run (in input order) whether it started now, was delayed, or existed already. */
export interface StartReport {
  runIds: string[];
  outcomes: Array<"started" | "delayed" | "existing">;
}

/** startRuns, also saying per run whether it started, was delayed or already existed (once-only starts). */
export async function startRunsReport(redis: RedisClient, payloads: unknown[], { keys, pipeline, stage = pipeline.entry, ttlSeconds = 7 * 24 * 3600, runIds, recentRunsMax = RECENT_RUNS_MAX, maxBacklog = 0, priority, onceWithinMs = 0, runAt = 0, trace }: StartRunsOptions): Promise<StartReport> {
  if (!pipeline.stages.has(stage)) throw new Error(`unknown stage ${stage}`);
  const now = Date.now();
  const envelopes: Envelope[] = payloads.map((payload, i) => newEnvelope(stage, payload, { now, priority, trace, ...(runIds ? { runId: runIds[i] } : {}) }));
  const byPartition = new Map<number, Envelope[]>();
  for (const e of envelopes) {
    const p = keys.partitionOf(e.runId);
    const list = byPartition.get(p) ?? [];
    list.push(e);
    byPartition.set(p, list);
  }
  // One partition: the script checks the backlog and writes atomically. Several (one
  // script call each, in different slots): each is checked first and the batch is
  // then written unchecked, so it is never half accepted; concurrent batches may
  // overshoot the limit by their own size.
  // A delayed batch adds nothing to the stream now: not checked.
  let limit = runAt > now ? 0 : maxBacklog;
  if (limit > 0 && byPartition.size > 1) {
    await Promise.all([...byPartition.keys()].map((p) => checkBacklog(redis, keys, stage, p, maxBacklog, payloads.length)));
    limit = 0;
  }
  const replies = await Promise.all(
    [...byPartition].map(([p, list]) => {
      const scriptKeys = [keys.stream(stage, p), keys.stageStats(stage, p), keys.recentRuns(p), keys.delayed(p)];
      const args: Array<string | number> = [stage, now, ttlSeconds, pipeline.triggerStep ?? "", recentRunsMax, keys.group(stage), limit, list.length, onceWithinMs, runAt];
      for (const e of list) {
        scriptKeys.push(keys.run(e.runId), keys.runLog(e.runId));
        args.push(scriptKeys.length - 1, scriptKeys.length, JSON.stringify(e), e.runId);
      }
      return evalScript<unknown[]>(redis, "enqueueRuns", scriptKeys, args);
    }),
  );
  for (const reply of replies) if (Number(reply[0]) === -1) throw new BackpressureError(stage, Number(reply[1]), maxBacklog);
  const outcome = new Map<string, StartReport["outcomes"][number]>();
  [...byPartition.values()].forEach((list, i) =>
    list.forEach((e, k) => outcome.set(e.runId, replies[i][k] === "delayed" ? "delayed" : replies[i][k] === "" || replies[i][k] === null ? "existing" : "started")),
  );
  return { runIds: envelopes.map((e) => e.runId), outcomes: envelopes.map((e) => outcome.get(e.runId) ?? "started") };
}

/** The pre-check of a batch over several partitions (counts the refusal as the script would). */
async function checkBacklog(redis: RedisClient, keys: Keys, stage: string, p: number, limit: number, runs: number): Promise<void> {
  const [length, pending, lag] = (await evalScript<[number, number, number]>(redis, "streamBacklog", [keys.stream(stage, p)], [keys.group(stage), limit])).map(Number);
  // No group yet: nothing was ever delivered, every entry waits.
  const waiting = lag < 0 ? length : pending + lag;
  if (waiting < limit) return;
  await redis.hincrby(keys.stageStats(stage, p), "throttled", 1);
  await redis.hincrby(keys.stageStats(stage, p), "throttled_runs", runs);
  throw new BackpressureError(stage, waiting, limit);
}

export type RunStatus = "running" | "completed" | "failed" | "dead-lettered" | "skipped" | "delayed" | "waiting";

export interface RunView {
  runId: string;
  status: RunStatus;
  step: string;
  createdAt?: number;
  updatedAt?: number;
  steps: Array<{ stage: string; status: string; result?: unknown; ms?: number; attempt?: number; error?: string; at?: number; /** The consumer (worker-host) that committed the step. */ by?: string; copied?: boolean }>;
  /** This run is a rerun: of which run, from which step, with its checkpointed or an edited input. */
  rerunOf?: { runId: string; fromStep: string; input: string };
  /** Reruns started from this run, oldest first. */
  reruns?: Array<{ runId: string; fromStep: string; input: string; at: number }>;
  /** When delayed: the due time (epoch ms). */
  dueAt?: number;
  /** When waiting: the event it waits for, until when, and where it goes next. */
  waitingFor?: { event: string; timeoutAt: number | null; to: string | null; onTimeout: string | null; since: number };
  log: Array<{ id: string; stage: string; event: string; at: number; [k: string]: unknown }>;
}

function parseJson(text: unknown): Record<string, unknown> {
  if (typeof text === "object" && text !== null) return text as Record<string, unknown>;
  try {
    return JSON.parse(String(text)) as Record<string, unknown>;
  } catch {
    return {};
  }
}

/** Reads a run's checkpoint and activity log; null when the run is unknown (or expired). */
export async function readRun(redis: RedisClient, keys: Keys, pipeline: Pipeline, runId: string): Promise<RunView | null> {
  const [hash, log] = await Promise.all([
    redis.hgetall<Record<string, unknown>>(keys.run(runId)),
    redis.xrange(keys.runLog(runId), "-", "+", 1000) as Promise<Record<string, Record<string, unknown>>>,
  ]);
  if (!hash || Object.keys(hash).length === 0) return null;
  // The trigger step (e.g. "ingest") is recorded by enqueue-runs.lua when the run starts.
  const order = [...(pipeline.triggerStep ? [pipeline.triggerStep] : []), ...pipeline.stages.keys()];
  const steps: RunView["steps"] = [];
  for (const stage of order) {
    const done = hash[`step:${stage}`];
    const failed = hash[`failed:${stage}`];
    if (done !== undefined) {
      const d = parseJson(done);
      steps.push({ stage, status: String(d.status ?? "completed"), result: d.result, ms: d.ms as number, attempt: d.attempt as number, at: d.at as number, ...(typeof d.by === "string" ? { by: d.by } : {}), ...(d.copied ? { copied: true } : {}) });
    } else if (failed !== undefined) {
      const f = parseJson(failed);
      steps.push({ stage, status: "dead-lettered", error: String(f.error ?? ""), attempt: f.attempts as number, at: f.at as number });
    }
  }
  const reruns = Object.entries(hash)
    .filter(([k]) => k.startsWith("rerun:"))
    .map(([, v]) => parseJson(v) as { runId: string; fromStep: string; input: string; at: number })
    .sort((a, b) => a.at - b.at);
  const waiting = hash.wait_event !== undefined ? hash : undefined;
  return {
    runId,
    ...(hash.rerun_of !== undefined ? { rerunOf: { runId: String(hash.rerun_of), fromStep: String(hash.rerun_from), input: String(hash.rerun_input ?? "checkpointed") } } : {}),
    ...(reruns.length > 0 ? { reruns } : {}),
    ...(hash.due_at !== undefined && hash.status === "delayed" ? { dueAt: Number(hash.due_at) } : {}),
    ...(waiting
      ? {
          waitingFor: {
            event: String(waiting.wait_event),
            timeoutAt: waiting.wait_timeout_at ? Number(waiting.wait_timeout_at) : null,
            to: waiting.wait_to ? String(waiting.wait_to) : null,
            onTimeout: waiting.wait_on_timeout ? String(waiting.wait_on_timeout) : null,
            since: Number(waiting.wait_since ?? 0),
          },
        }
      : {}),
    status: String(hash.status ?? "running") as RunStatus,
    step: String(hash.step ?? ""),
    createdAt: hash.created_at !== undefined ? Number(hash.created_at) : undefined,
    updatedAt: hash.updated_at !== undefined ? Number(hash.updated_at) : undefined,
    steps,
    log: Object.entries(log ?? {}).map(([id, fields]) => {
      const data = fields.data !== undefined ? parseJson(fields.data) : {};
      return { ...data, id, stage: String(fields.stage), event: String(fields.event), at: Number(fields.at) };
    }),
  };
}

/** Run statuses, as checkpoints record them (the GET /v1/runs filter). */
export const RUN_STATUSES = ["running", "completed", "failed", "dead-lettered", "skipped", "delayed", "waiting"] as const satisfies readonly RunStatus[];

/**
 * Index entries examined at most when filtering by status, over all
 * partitions (each examines its share, at least `limit`), so one request stays
 * a bounded amount of server work however many partitions there are.
 */
export const RECENT_RUNS_SCAN = 2_000;

export interface RunSummary {
  runId: string;
  status: RunStatus;
  /** The stage the run is at (last committed, or its entry stage). */
  step: string;
  createdAt: number;
  updatedAt: number;
}

export interface RunList {
  /** Newest first. */
  items: RunSummary[];
  /** Index entries examined over all partitions. */
  examined: number;
  /**
   * True when a status filter stopped at the scan bound in some partition
   * before finding `limit` runs: older matches may exist.
   */
  truncated: boolean;
}

/**
 * The newest runs over every partition: each partition's index answers its
 * newest `limit` matches (one read-only script call per partition, status
 * read from the checkpoints), merged by creation time.
 */
export async function listRuns(redis: RedisClient, keys: Keys, { limit = 20, status }: { limit?: number; status?: RunStatus } = {}): Promise<RunList> {
  const share = Math.max(limit, Math.ceil(RECENT_RUNS_SCAN / keys.partitions));
  // Without a filter every live entry matches; the bound only skips runs whose checkpoint expired.
  const bound = status ? share : limit + share;
  const parts = await Promise.all(
    keys.allPartitions.map((p) => evalScript<Array<string | number>>(redis, "listRuns", [keys.recentRuns(p)], [keys.runKeyPrefix(p), limit, status ?? "", bound])),
  );
  const items: RunSummary[] = [];
  let examined = 0;
  let truncated = false;
  for (const reply of parts) {
    examined += Number(reply[0]);
    const found = (reply.length - 2) / 5;
    if (Number(reply[1]) !== 1 && found < limit) truncated = true;
    for (let i = 2; i < reply.length; i += 5) {
      items.push({
        runId: String(reply[i]),
        status: String(reply[i + 1]) as RunStatus,
        step: String(reply[i + 2]),
        createdAt: Number(reply[i + 3]),
        updatedAt: Number(reply[i + 4]),
      });
    }
  }
  items.sort((a, b) => b.createdAt - a.createdAt || (a.runId < b.runId ? 1 : -1));
  return { items: items.slice(0, limit), examined, truncated };
}
