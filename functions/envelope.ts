/**
 * The one schema module for the stage runtime: the envelope every stream entry
 * carries, and the request/response of `POST /stages/:name`.
 */
import { z } from "zod";
import { RUN_ID_PATTERN, RunId, STAGE_NAME_PATTERN, StageName } from "./keys";

const TRACE_ID_PATTERN = /^(?!0{32})[0-9a-f]{32}$/;
const BRANCH_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
const SPAN_ID_PATTERN = /^(?!0{16})[0-9a-f]{16}$/;

/** W3C trace-context span id: 16 lowercase hex chars, not all zero. */
export const SpanId = z.string().regex(SPAN_ID_PATTERN, "span ids are 16 lowercase hex chars");

/** W3C trace-context trace id: 32 lowercase hex chars, not all zero. */
export const TraceId = z.string().regex(TRACE_ID_PATTERN, "traceId must be 32 lowercase hex chars");

/** One unit of work on its way through the pipeline. */
export const Envelope = z.object({
  runId: RunId,
  stage: StageName,
  /** Delivery attempt, 1-based; the worker-host sets it from the PEL delivery count. */
  attempt: z.number().int().min(1).max(1000),
  traceId: TraceId,
  /** Epoch milliseconds when this envelope was created. */
  createdAt: z.number().int().nonnegative(),
  /** Distinguishes several envelopes of one run for the same stage (fan-in/fan-out shapes). */
  branch: z.string().regex(BRANCH_PATTERN).optional(),
  /** The run's priority lane (absent: normal); carried to every later envelope of the run. */
  priority: z.enum(["high", "low"]).optional(),
  /** The span this envelope's hop is a child of (the previous hop's); absent on entry envelopes (their parent is the run's ingest span) and whenever tracing is off. */
  parentSpanId: SpanId.optional(),
  /** Entry envelopes: the caller's span (from its `traceparent`), parent of the ingest span. */
  callerSpanId: SpanId.optional(),
  /** Set by a tracing worker-host on dispatch: the hop's own span, parent of the outputs. */
  spanId: SpanId.optional(),
  payload: z.unknown(),
});
export type Envelope = z.infer<typeof Envelope>;

const isInt = (v: unknown, min: number, max: number): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= min && v <= max;

/**
 * The hot-path check of an envelope (the worker-host runs it on every stream
 * entry): the same rules as the zod `Envelope` schema, hand-written because it
 * runs ~5x faster. Returns the envelope with unknown keys dropped (as zod
 * does), or undefined when anything is off; callers then run `Envelope` for
 * the issue list.
 */
export function checkEnvelope(value: unknown): Envelope | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.runId !== "string" || !RUN_ID_PATTERN.test(v.runId)) return undefined;
  if (typeof v.stage !== "string" || !STAGE_NAME_PATTERN.test(v.stage)) return undefined;
  if (!isInt(v.attempt, 1, 1000)) return undefined;
  if (typeof v.traceId !== "string" || !TRACE_ID_PATTERN.test(v.traceId)) return undefined;
  if (!isInt(v.createdAt, 0, Number.MAX_SAFE_INTEGER)) return undefined;
  const out: Envelope = { runId: v.runId, stage: v.stage, attempt: v.attempt, traceId: v.traceId, createdAt: v.createdAt, payload: v.payload };
  if (v.branch !== undefined) {
    if (typeof v.branch !== "string" || !BRANCH_PATTERN.test(v.branch)) return undefined;
    out.branch = v.branch;
  }
  for (const f of ["parentSpanId", "callerSpanId", "spanId"] as const) {
    const id = v[f];
    if (id === undefined) continue;
    if (typeof id !== "string" || !SPAN_ID_PATTERN.test(id)) return undefined;
    out[f] = id;
  }
  if (v.priority !== undefined) {
    if (v.priority !== "high" && v.priority !== "low") return undefined;
    out.priority = v.priority;
  }
  return out;
}

/** Priority lanes of runs: a stage with `lanes` serves them by weight (see StageDef.lanes). */
export const PRIORITIES = ["high", "normal", "low"] as const;
export type Priority = (typeof PRIORITIES)[number];

/** Most envelopes one `POST /stages/:name` call may carry. */
export const MAX_BATCH = 1000;

export const StageRequest = z.object({
  envelopes: z.array(Envelope).min(1).max(MAX_BATCH),
});
export type StageRequest = z.infer<typeof StageRequest>;

/** Per-envelope success: the envelopes for the next stage(s) and a small result for the checkpoint. */
export const StageSuccess = z.object({
  ok: z.literal(true),
  status: z.enum(["completed", "skipped", "waiting"]),
  outputs: z.array(Envelope),
  result: z.unknown().optional(),
  /** With status "waiting": the event the run waits for, when it gives up (epoch ms), where it goes next. */
  waitFor: z.object({ event: z.string(), timeoutAt: z.number().nullable(), to: z.string(), onTimeout: z.string().nullable() }).optional(),
  /** Handler time for this envelope, milliseconds. */
  ms: z.number().nonnegative(),
  /** Cost the handler reported with ctx.reportCost (budgets correct their estimate by it). */
  cost: z.number().nonnegative().optional(),
});
export type StageSuccess = z.infer<typeof StageSuccess>;

/** Per-envelope failure: retryable errors are redelivered with backoff, others dead-lettered. */
export const StageFailure = z.object({
  ok: z.literal(false),
  error: z.object({ message: z.string(), retryable: z.boolean() }),
  ms: z.number().nonnegative(),
  cost: z.number().nonnegative().optional(),
});
export type StageFailure = z.infer<typeof StageFailure>;

export const StageItemResult = z.discriminatedUnion("ok", [StageSuccess, StageFailure]);
export type StageItemResult = z.infer<typeof StageItemResult>;

export const StageResponse = z.object({ results: z.array(StageItemResult) });
export type StageResponse = z.infer<typeof StageResponse>;

/** Random hex of `bytes` bytes from WebCrypto (works in Workers and Node). */
export function randomHex(bytes: number): string {
  // Keys and tokens (more than 16 bytes) are drawn fresh. Ids (run ids, trace
  // ids, lock tokens) come from a pool refilled 4 KB at a time: one
  // getRandomValues call per ~300 runs instead of two per run.
  if (bytes > 16) return hexOf(crypto.getRandomValues(new Uint8Array(bytes)), 0, bytes);
  if (poolAt + bytes > pool.length) {
    if (pool.length === 0) pool = new Uint8Array(4096);
    crypto.getRandomValues(pool);
    poolAt = 0;
  }
  const out = hexOf(pool, poolAt, bytes);
  poolAt += bytes;
  return out;
}

function hexOf(buf: Uint8Array, at: number, bytes: number): string {
  let out = "";
  for (let i = at; i < at + bytes; i++) out += HEX[buf[i]];
  return out;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
/** Random bytes for ids; filled lazily (Workers allow randomness only inside a request). */
let pool = new Uint8Array(0);
let poolAt = 0;

/** A new sortable run id: base-36 time + random suffix. */
export function newRunId(now = Date.now()): string {
  return `r${now.toString(36)}${randomHex(6)}`;
}

/** Builds the first envelope of a new run. */
export function newEnvelope(stage: string, payload: unknown, { runId = newRunId(), now = Date.now(), priority, trace }: { runId?: string; now?: number; priority?: Priority; trace?: TraceParent } = {}): Envelope {
  // No span id is minted here: a tracing host derives the run's ingest span id from the run (worker-host/tracing.ts), so tracing off costs nothing.
  const envelope: Envelope = { runId, stage, attempt: 1, traceId: trace?.traceId ?? randomHex(16), createdAt: now, payload };
  if (trace) envelope.callerSpanId = trace.spanId;
  if (priority && priority !== "normal") envelope.priority = priority;
  return envelope;
}

/** A caller's W3C trace context: the trace to join and the caller's span. */
export interface TraceParent {
  traceId: string;
  spanId: string;
}

/** Parses a W3C `traceparent` header (`00-<trace id>-<span id>-<flags>`); undefined when absent or malformed (a new trace starts). */
export function parseTraceparent(header: string | undefined | null): TraceParent | undefined {
  const m = header ? /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/.exec(header.trim()) : null;
  if (!m || m[1] === "ff" || !TRACE_ID_PATTERN.test(m[2]) || !SPAN_ID_PATTERN.test(m[3])) return undefined;
  return { traceId: m[2], spanId: m[3] };
}
