/**
 * Reruns: a new attempt of a run from one of its steps, with the input that
 * step had (kept in the checkpoint by the commit) or an edited payload,
 * linked both ways to the original (rerun-run.lua). And redriving a dead
 * letter with an edited payload.
 */
import { Envelope, newRunId, randomHex } from "./envelope";
import type { Keys } from "./keys";
import type { Pipeline } from "./pipeline";
import { evalScript, type RedisClient } from "./redis";

export type RerunResult =
  | { ok: true; runId: string; rerunOf: string; fromStep: string; input: "checkpointed" | "edited" }
  | { ok: false; code: "not_found" | "no_input"; message: string };

/** A fresh run id in partition `p` (so a script may touch it beside a run of that partition). */
export function runIdInPartition(keys: Keys, p: number): string {
  for (let i = 0; i < 100_000; i++) {
    const id = newRunId();
    if (keys.partitionOf(id) === p) return id;
  }
  throw new Error(`no run id found for partition ${p}`);
}

function parseEnvelope(raw: unknown): Envelope | undefined {
  const value = typeof raw === "string" ? (() => { try { return JSON.parse(raw) as unknown; } catch { return undefined; } })() : raw;
  const parsed = Envelope.safeParse(value);
  return parsed.success ? parsed.data : undefined;
}

/**
 * Starts a new attempt of `runId` at `fromStep`: with `payload` when given,
 * else with the input that step had in the original run. Steps before it
 * (in pipeline order) are copied into the new run, marked `copied`.
 */
export async function rerunRun(redis: RedisClient, keys: Keys, pipeline: Pipeline, { runId, fromStep, payload, hasPayload, ttlSeconds = 7 * 24 * 3600 }: { runId: string; fromStep: string; payload?: unknown; hasPayload: boolean; ttlSeconds?: number }): Promise<RerunResult> {
  const runKey = keys.run(runId);
  const [exists, storedInput] = await Promise.all([redis.exists(runKey), redis.hget(runKey, `input:${fromStep}`)]);
  if (!exists) return { ok: false, code: "not_found", message: `no run ${runId} (unknown or expired)` };
  const stored = parseEnvelope(storedInput);
  if (!hasPayload && !stored) return { ok: false, code: "no_input", message: `run ${runId} has no checkpointed input for step ${fromStep} (the run never reached it); send a payload` };
  const p = keys.partitionOf(runId);
  const newId = runIdInPartition(keys, p);
  const now = Date.now();
  const envelope: Envelope = {
    runId: newId,
    stage: fromStep,
    attempt: 1,
    traceId: stored?.traceId ?? randomHex(16),
    createdAt: now,
    ...(stored?.branch ? { branch: stored.branch } : {}),
    payload: hasPayload ? payload : stored!.payload,
  };
  const order = [...pipeline.stages.keys()];
  const earlier = order.slice(0, Math.max(0, order.indexOf(fromStep)));
  const copy = [...(pipeline.triggerStep ? [`step:${pipeline.triggerStep}`] : []), ...earlier.map((s) => `step:${s}`)];
  const input = hasPayload ? "edited" : "checkpointed";
  const ok = await evalScript<number>(
    redis,
    "rerunRun",
    [runKey, keys.runLog(runId), keys.run(newId), keys.runLog(newId), keys.stream(fromStep, p), keys.recentRuns(p)],
    [fromStep, now, ttlSeconds, newId, runId, JSON.stringify(envelope), input, ...copy],
  );
  if (Number(ok) !== 1) return { ok: false, code: "not_found", message: `no run ${runId} (expired meanwhile)` };
  return { ok: true, runId: newId, rerunOf: runId, fromStep, input };
}
