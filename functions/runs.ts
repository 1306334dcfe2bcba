/**
 * Starting runs and reading them back: checkpoint hash + activity log.
 */
import { newEnvelope, type Envelope } from "./envelope";
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
}

/**
 * Starts one run per payload: checkpoint "running", a log entry, and the first
 * envelope on the entry stage's stream, one script call per partition.
 * Returns the run ids in input order.
 */
export async function startRuns(redis: RedisClient, payloads: unknown[], { keys, pipeline, stage = pipeline.entry, ttlSeconds = 7 * 24 * 3600, runIds }: StartRunsOptions): Promise<string[]> {
  if (!pipeline.stages.has(stage)) throw new Error(`unknown stage ${stage}`);
  const now = Date.now();
  const envelopes: Envelope[] = payloads.map((payload, i) => newEnvelope(stage, payload, { now, ...(runIds ? { runId: runIds[i] } : {}) }));
  const byPartition = new Map<number, Envelope[]>();
  for (const e of envelopes) {
    const p = keys.partitionOf(e.runId);
    const list = byPartition.get(p) ?? [];
    list.push(e);
    byPartition.set(p, list);
  }
  await Promise.all(
    [...byPartition].map(([p, list]) => {
      const scriptKeys = [keys.stream(stage, p), keys.stageStats(stage, p)];
      const args: Array<string | number> = [stage, now, ttlSeconds, pipeline.triggerStep ?? "", list.length];
      for (const e of list) {
        scriptKeys.push(keys.run(e.runId), keys.runLog(e.runId));
        args.push(scriptKeys.length - 1, scriptKeys.length, JSON.stringify(e));
      }
      return evalScript(redis, "enqueueRuns", scriptKeys, args);
    }),
  );
  return envelopes.map((e) => e.runId);
}

export type RunStatus = "running" | "completed" | "failed" | "dead-lettered" | "skipped";

export interface RunView {
  runId: string;
  status: RunStatus;
  step: string;
  createdAt?: number;
  updatedAt?: number;
  steps: Array<{ stage: string; status: string; result?: unknown; ms?: number; attempt?: number; error?: string; at?: number }>;
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
      steps.push({ stage, status: String(d.status ?? "completed"), result: d.result, ms: d.ms as number, attempt: d.attempt as number, at: d.at as number });
    } else if (failed !== undefined) {
      const f = parseJson(failed);
      steps.push({ stage, status: "dead-lettered", error: String(f.error ?? ""), attempt: f.attempts as number, at: f.at as number });
    }
  }
  return {
    runId,
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
