/**
 * Stage and pipeline definitions. A stage is one module exporting
 * `defineStage({...})`; a pipeline lists its stages. Adding a stage = one
 * handler module + one line in the pipeline definition.
 */
import type { z } from "zod";
import type { RedisClient } from "./redis";
import type { Keys } from "./keys";
import type { RunStream } from "./run-stream";
import type { TraceScope } from "./tracing";
import { parseCron, type Cron } from "./cron";

/** Throw from a handler to fail an envelope; `retryable: false` dead-letters it at once. */
export class StageError extends Error {
  readonly retryable: boolean;
  constructor(message: string, { retryable = true }: { retryable?: boolean } = {}) {
    super(message);
    this.name = "StageError";
    this.retryable = retryable;
  }
}

/** What a handler sees besides its payload. Handlers keep no state between calls. */
export interface StageContext {
  runId: string;
  stage: string;
  attempt: number;
  traceId: string;
  /** Valkey through the @upstash/redis API (HTTP on Workers, iovalkey in-process). */
  redis: RedisClient;
  keys: Keys;
  /** Platform bindings / configuration (read-only). */
  env: Record<string, unknown>;
  /**
   * Reports what this call actually cost against the stage's `budget` (e.g.
   * the LLM tokens a response says it used). The worker-host charged the
   * budget's estimate before the call and corrects it by the difference; calls
   * add up. Without a report the estimate stands. No-op without a budget.
   */
  reportCost: (amount: number) => void;
  /**
   * The run's streamed output (`GET /v1/runs/:runId/stream` serves it as SSE):
   * `await ctx.stream.write(token)`. Every chunk is stored before the step commits.
   */
  stream: RunStream;
  /**
   * Spans of this hop, children of the host's hop span (functions/tracing.ts);
   * undefined when the run is not traced. Use `inSpan(ctx.trace, name, fn)`,
   * which just calls `fn` when it is undefined.
   */
  trace?: TraceScope;
}

/** What a flow key function sees besides the (validated) payload. */
export interface FlowKeyContext {
  runId: string;
  stage: string;
  /** The host's app environment (settings), read-only. */
  env: Record<string, unknown>;
}

/** A flow key: entries with the same key share a limit; other keys are not held up by it. */
export type FlowKeyFn<P> = (payload: P, ctx: FlowKeyContext) => string;
/** A limit given as a number, or read from the app's settings when the host starts; 0 turns the limit off. */
export type FlowNumber = number | ((env: Record<string, unknown>) => number);

/**
 * Flow limits of a stage, enforced by the worker-host before dispatch, with
 * all state in Valkey (they hold across hosts and restarts). An entry over a
 * limit is parked in a waiting list of its key (acked from the stream: no
 * delivery attempt is spent, it is never dead-lettered for waiting) and put
 * back on the stream when its key has room, round-robin across keys, so other
 * keys keep flowing. See docs/writing-stages.md, "Flow control".
 */
export interface FlowLimits<P> {
  /** At most `limit` entries of one key in handlers at once (slot leases expire, so a killed host leaks nothing for long). */
  concurrency?: { key: FlowKeyFn<P>; limit: FlowNumber };
  /** At most `perSecond` entries of one key start per second, `burst` at once after a pause (default: perSecond, at least 1). */
  rateLimit?: { key: FlowKeyFn<P>; perSecond: FlowNumber; burst?: FlowNumber };
  /**
   * A cost budget per key and minute (e.g. LLM tokens): an entry is charged
   * `estimate(payload)` before its call and corrected by what the handler
   * reports with `ctx.reportCost`; a key out of budget waits for it to refill.
   */
  budget?: { key: FlowKeyFn<P>; tokensPerMinute: FlowNumber; estimate: (payload: P, ctx: FlowKeyContext) => number; burst?: FlowNumber };
  /**
   * Priority lanes: at most `limit` entries of the stage in handlers at once
   * (across hosts); past it, entries wait in their run's lane (high, normal,
   * low) and are readmitted by `weights` (default 8:2:1: of 11 freed slots, 8
   * go to high, 2 to normal, 1 to low while all three wait; a lane alone gets
   * them all), so higher lanes go first and lower ones never starve.
   */
  lanes?: { limit: FlowNumber; weights?: { high: number; normal: number; low: number } };
}

/** One envelope to emit: to a named next stage, or the stage's only `next`. */
export interface Emit {
  to?: string;
  payload: unknown;
  branch?: string;
}

/** A handler's request to wait for an event (StageOutcome.waitFor). */
export interface WaitFor {
  /** Event name: 1-64 of a-z, 0-9, '_' and '-', starting with a letter. */
  event: string;
  /** Give up after this long (ms, at most 366 days); omitted: wait until the checkpoint expires. */
  timeoutMs?: number;
  /** The stage the event's data goes to (one of `next`; default the first). */
  to?: string;
  /** The stage a timed-out run goes to (one of `next`); omitted: dead-lettered. */
  onTimeout?: string;
}

/** What a handler returns. */
export interface StageOutcome {
  /** Envelopes for the next stage(s). Omit or leave empty to end the run here. */
  emit?: Emit[];
  /** Small JSON stored in the run checkpoint for this step. */
  result?: unknown;
  /** Set to a reason to end the run as "skipped" (e.g. a duplicate). */
  skipped?: string;
  /**
   * Park the run until an outside event arrives (`POST /v1/runs/:runId/events/:event`):
   * no consumer is held meanwhile. The event's data becomes the payload of `to`
   * (default: the stage's first `next`). Past `timeoutMs` the run goes to
   * `onTimeout` (one of `next`, with `{ timedOut, event, waitedMs }`) or, without
   * one, is dead-lettered. Not together with `emit`.
   */
  waitFor?: WaitFor;
}

export interface StageDef<S extends z.ZodType = z.ZodType> {
  name: string;
  /** Payload schema; an invalid payload is a non-retryable error (dead-lettered). */
  input: S;
  /** Stages this one may emit to; the first is the default target. */
  next: readonly string[];
  handle: (payload: z.infer<S>, ctx: StageContext) => Promise<StageOutcome> | StageOutcome;
  /** Per-key flow limits (see FlowLimits); a stage without them costs nothing extra. */
  concurrency?: FlowLimits<z.infer<S>>["concurrency"];
  rateLimit?: FlowLimits<z.infer<S>>["rateLimit"];
  budget?: FlowLimits<z.infer<S>>["budget"];
  lanes?: FlowLimits<z.infer<S>>["lanes"];
}

/**
 * Declares a stage.
 * @example
 * export const shout = defineStage({
 *   name: "shout", input: z.object({ text: z.string() }), next: [],
 *   handle: ({ text }) => ({ result: { text: text.toUpperCase() } }),
 * });
 */
export function defineStage<S extends z.ZodType>(def: StageDef<S>): StageDef<S> {
  return def;
}

/** A cron schedule of a pipeline: each tick starts one run, exactly once across every host and the Workers cron. */
export interface ScheduleDef {
  /** Short name (`[a-z][a-z0-9-]*`, at most 32 chars), part of each tick's run id. */
  name: string;
  /** Five-field cron expression, UTC (functions/cron.ts). */
  cron: string;
  /** Payload of each tick's run (default `{ schedule, tick }`: the name and the tick's ISO time). */
  payload?: unknown;
  /** Stage the runs start at (default: the pipeline's entry). */
  stage?: string;
}

/** A schedule as the pipeline holds it: with its parsed expression. */
export interface Schedule extends ScheduleDef {
  parsed: Cron;
}

export interface Pipeline {
  name: string;
  /** Cron schedules (`definePipeline({ schedules })`); empty when none. */
  schedules: readonly Schedule[];
  /** The stage new runs start at. */
  entry: string;
  stages: ReadonlyMap<string, StageDef>;
  /**
   * Name of the step that starts a run (e.g. "ingest": the HTTP/cron/replay
   * trigger), recorded in the checkpoint when the run is enqueued and shown
   * first in GET /v1/runs/:runId. Omitted: runs list their stages only.
   */
  triggerStep?: string;
}

/** Declares a pipeline and checks that every `next` names a known stage. */
export function definePipeline({ name, stages, triggerStep, schedules = [] }: { name: string; stages: StageDef[]; triggerStep?: string; schedules?: ScheduleDef[] }): Pipeline {
  if (stages.length === 0) throw new Error(`pipeline ${name} has no stages`);
  const byName = new Map<string, StageDef>();
  for (const s of stages) {
    if (byName.has(s.name)) throw new Error(`pipeline ${name}: duplicate stage ${s.name}`);
    byName.set(s.name, s);
  }
  for (const s of stages) {
    for (const n of s.next) {
      if (!byName.has(n)) throw new Error(`pipeline ${name}: stage ${s.name} emits to unknown stage ${n}`);
    }
  }
  if (triggerStep !== undefined && (!/^[a-z][a-z0-9-]{0,31}$/.test(triggerStep) || byName.has(triggerStep))) {
    throw new Error(`pipeline ${name}: trigger step ${triggerStep} must be a stage-like name that is not a stage`);
  }
  const parsed: Schedule[] = [];
  for (const sc of schedules) {
    if (!/^[a-z][a-z0-9-]{0,31}$/.test(sc.name)) throw new Error(`pipeline ${name}: schedule name ${JSON.stringify(sc.name)} must be 1-32 chars of a-z, 0-9 and '-', starting with a letter`);
    if (parsed.some((p) => p.name === sc.name)) throw new Error(`pipeline ${name}: duplicate schedule ${sc.name}`);
    if (sc.stage !== undefined && !byName.has(sc.stage)) throw new Error(`pipeline ${name}: schedule ${sc.name} starts at unknown stage ${sc.stage}`);
    parsed.push({ ...sc, parsed: parseCron(sc.cron) });
  }
  return { name, entry: stages[0].name, stages: byName, schedules: parsed, ...(triggerStep ? { triggerStep } : {}) };
}
