/**
 * `POST /stages/:name`: runs one stage's handler over a batch of envelopes and
 * answers, per envelope, its outputs or an error with `retryable`. The handler
 * keeps no state between requests; everything durable goes through Valkey.
 */
import type { Context } from "hono";
import type { z } from "zod";
import { Envelope, MAX_BATCH, StageRequest, type StageItemResult } from "./envelope";
import { apiError, toIssues } from "./http";
import { StageError, type Pipeline, type StageDef, type StageOutcome } from "./pipeline";
import { EventName, MAX_WAIT_MS } from "./wait-for";
import { redisFromEnv, type AppEnv, type RedisClient } from "./redis";
import { settingsFor } from "./config";
import { checkSignatureHeaders, NONCE_TTL_MS, verifyStageSignature } from "./signing";
import { lazyRunStream } from "./run-stream";
import { fetchSpanSink, traceScope, type SpanRecord, type SpanSink, type TraceScope } from "./tracing";
import { jsonDepthExceeds, MAX_STAGE_JSON_DEPTH, payloadTooLarge, readBodyLimited } from "./body-limit";

const decoder = new TextDecoder();

function now(): number {
  return performance.now();
}

async function runOne(stage: StageDef, pipeline: Pipeline, env: AppEnv, redis: RedisClient, envelope: Envelope, trace?: TraceScope): Promise<StageItemResult> {
  const started = now();
  const input = stage.input.safeParse(envelope.payload);
  if (!input.success) {
    const detail = toIssues(input.error as z.ZodError).map((i) => `${i.path || "(root)"}: ${i.message}`).join("; ");
    return { ok: false, error: { message: `invalid payload for stage ${stage.name}: ${detail}`, retryable: false }, ms: msSince(started) };
  }
  let cost: number | undefined;
  const reportCost = (amount: number) => {
    if (Number.isFinite(amount) && amount >= 0) cost = (cost ?? 0) + amount;
  };
  try {
    const { keys } = settingsFor(env);
    const output = lazyRunStream(redis, keys, { runId: envelope.runId, stage: stage.name, attempt: envelope.attempt });
    const outcome = await stage.handle(input.data, {
      runId: envelope.runId,
      stage: stage.name,
      attempt: envelope.attempt,
      traceId: envelope.traceId,
      redis,
      keys,
      env,
      reportCost,
      stream: output.stream,
      ...(trace ? { trace } : {}),
    });
    // Streamed chunks are stored before the step can commit (the SSE route ends on the commit).
    await output.flush();
    const createdAt = Date.now();
    if (outcome.waitFor) return waitingResult(stage, outcome, createdAt, started);
    const emits = outcome.emit;
    const outputs: Envelope[] = [];
    if (emits) {
      for (let i = 0; i < emits.length; i++) {
        const emit = emits[i];
        const to = emit.to ?? stage.next[0];
        if (!to || !stage.next.includes(to)) {
          throw new StageError(`stage ${stage.name} emitted to ${to ?? "(none)"}, not one of its next stages [${stage.next.join(", ")}]`, { retryable: false });
        }
        if (!pipeline.stages.has(to)) throw new StageError(`unknown stage ${to}`, { retryable: false });
        const branch = emit.branch || envelope.branch;
        const out: Envelope = branch
          ? { runId: envelope.runId, stage: to, attempt: 1, traceId: envelope.traceId, createdAt, branch, payload: emit.payload }
          : { runId: envelope.runId, stage: to, attempt: 1, traceId: envelope.traceId, createdAt, payload: emit.payload };
        if (envelope.priority) out.priority = envelope.priority;
        // The next hop is a child of this one (of this hop's parent when no tracing host named it).
        const parentSpanId = envelope.spanId ?? envelope.parentSpanId;
        if (parentSpanId) out.parentSpanId = parentSpanId;
        outputs.push(out);
      }
    }
    return {
      ok: true,
      status: outcome.skipped ? "skipped" : "completed",
      outputs,
      result: outcome.skipped ? { skipped: outcome.skipped, ...(isObject(outcome.result) ? outcome.result : {}) } : outcome.result,
      ms: msSince(started),
      ...(cost !== undefined ? { cost } : {}),
    };
  } catch (err) {
    const retryable = err instanceof StageError ? err.retryable : true;
    const message = err instanceof Error ? err.message : String(err);
    return { ok: false, error: { message, retryable }, ms: msSince(started), ...(cost !== undefined ? { cost } : {}) };
  }
}

/** The result of a handler that asked to wait for an event (checked here, so a bad wait fails its envelope for good). */
function waitingResult(stage: StageDef, outcome: StageOutcome, now: number, started: number): StageItemResult {
  const w = outcome.waitFor!;
  const fail = (message: string): StageItemResult => ({ ok: false, error: { message: `stage ${stage.name}: ${message}`, retryable: false }, ms: msSince(started) });
  if (outcome.emit && outcome.emit.length > 0) return fail("waitFor and emit together: a waiting run emits when its event arrives");
  if (!EventName.safeParse(w.event).success) return fail(`waitFor.event ${JSON.stringify(w.event)}: ${EventName.safeParse(w.event).error?.issues[0]?.message}`);
  const to = w.to ?? stage.next[0];
  if (!to || !stage.next.includes(to)) return fail(`waitFor.to ${to ?? "(none)"} is not one of its next stages [${stage.next.join(", ")}]`);
  if (w.onTimeout !== undefined && !stage.next.includes(w.onTimeout)) return fail(`waitFor.onTimeout ${w.onTimeout} is not one of its next stages [${stage.next.join(", ")}]`);
  if (w.timeoutMs !== undefined && (!Number.isInteger(w.timeoutMs) || w.timeoutMs < 0 || w.timeoutMs > MAX_WAIT_MS)) return fail(`waitFor.timeoutMs must be an integer 0..${MAX_WAIT_MS}`);
  return {
    ok: true,
    status: "waiting",
    outputs: [],
    result: outcome.result,
    waitFor: { event: w.event, timeoutAt: w.timeoutMs !== undefined ? now + w.timeoutMs : null, to, onTimeout: w.onTimeout ?? null },
    ms: msSince(started),
  };
}

/** Milliseconds since `started` (a now() reading), to the microsecond. */
function msSince(started: number): number {
  return Math.round((now() - started) * 1000) / 1000;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * A batch handed over in-process by reference: the worker-host's
 * InProcessInvoker registers it under the very Request it passes to
 * `app.fetch`, so the envelopes (already validated by the worker) and the
 * results skip two JSON round trips and a second schema pass. Keyed by the
 * Request object, so nothing arriving over HTTP can reach this path.
 */
export interface InProcessBatch {
  envelopes: Envelope[];
  /** Set by the route as soon as it takes the batch (the caller must then not resend it). */
  taken?: boolean;
  results?: StageItemResult[];
}
export const inProcessBatches = new WeakMap<Request, InProcessBatch>();

/** Marks an app whose stage route takes in-process batches by reference (createApp sets it). */
export const TAKES_BATCHES_BY_REFERENCE = Symbol.for("edgepipe.stageBatchesByReference");

/** Runs a validated batch through a stage (used by the route, and directly by tests). */
export async function runStageBatch(pipeline: Pipeline, stageName: string, env: AppEnv, envelopes: Envelope[], { background }: { background?: (work: Promise<void>) => boolean } = {}): Promise<StageItemResult[]> {
  const stage = pipeline.stages.get(stageName);
  if (!stage) throw new Error(`unknown stage ${stageName}`);
  // One client per batch: over HTTP its auto-pipelining then merges the commands of
  // every envelope in the batch into few requests (not shared across requests).
  const redis = redisFromEnv(env);
  // Handler spans only when the host traces the run (it named the hop's span) and they can go somewhere.
  if (envelopes[0].spanId !== undefined) {
    const sink = spanSinkFor(env);
    if (sink) return runTraced(stage, pipeline, env, redis, envelopes, sink, background);
  }
  // A batch of one (the usual case at low load) skips Promise.all's per-batch allocations.
  if (envelopes.length === 1) return [await runOne(stage, pipeline, env, redis, envelopes[0])];
  return Promise.all(envelopes.map((e) => runOne(stage, pipeline, env, redis, e)));
}

const fetchSinks = new WeakMap<object, SpanSink | null>();

/** The host's sink in-process, else a fetch exporter from the OTEL_* settings (memoized per env), else none. */
function spanSinkFor(env: AppEnv): SpanSink | undefined {
  if (env.SPAN_SINK) return env.SPAN_SINK;
  let sink = fetchSinks.get(env);
  if (sink === undefined) {
    sink = fetchSpanSink(settingsFor(env).settings) ?? null;
    fetchSinks.set(env, sink);
  }
  return sink ?? undefined;
}

/** The batch with a trace scope per traced envelope; its spans are exported once, in the background when the runtime can (waitUntil). */
async function runTraced(stage: StageDef, pipeline: Pipeline, env: AppEnv, redis: RedisClient, envelopes: Envelope[], sink: SpanSink, background?: (work: Promise<void>) => boolean): Promise<StageItemResult[]> {
  const spans: SpanRecord[] = [];
  const results = await Promise.all(envelopes.map((e) => runOne(stage, pipeline, env, redis, e, e.spanId ? traceScope(spans, e.traceId, e.spanId) : undefined)));
  if (spans.length > 0) {
    const exported = Promise.resolve(sink.export(spans)).catch(() => undefined);
    if (!background?.(exported)) await exported;
  }
  return results;
}

/** Hands work to the Workers runtime's waitUntil (the response need not wait for it); false where there is none. */
function waitUntilOf(c: Context<{ Bindings: AppEnv }>): (work: Promise<void>) => boolean {
  return (work) => {
    try {
      c.executionCtx.waitUntil(work);
      return true;
    } catch {
      return false;
    }
  };
}

/** The Hono handler for `POST /stages/:name`. */
export function stageRoute(pipeline: Pipeline) {
  return async function handleStageRequest(c: Context<{ Bindings: AppEnv }>) {
    const name = c.req.param("name") ?? "";
    if (!pipeline.stages.has(name)) return apiError(c, 404, "not_found", `no stage named ${name}`);
    const direct = c.env?.IN_PROCESS ? inProcessBatches.get(c.req.raw) : undefined;
    if (direct) {
      direct.taken = true;
      const { envelopes } = direct;
      if (envelopes.length === 0 || envelopes.length > MAX_BATCH) return apiError(c, 400, "validation_failed", `a batch holds 1..${MAX_BATCH} envelopes`);
      const mismatched = envelopes.findIndex((e) => e.stage !== name);
      if (mismatched >= 0) return apiError(c, 400, "validation_failed", `envelopes[${mismatched}].stage is ${envelopes[mismatched].stage}, not ${name}`);
      direct.results = await runStageBatch(pipeline, name, c.env, envelopes);
      return c.body(null, 204);
    }
    const env = c.env ?? {};
    // Headers first (keys, timestamp, key id): an unsigned or stale request is refused before a byte of its body is read.
    if (!env.IN_PROCESS) {
      const pre = checkSignatureHeaders(env, c.req.header());
      if (!pre.ok) return apiError(c, 401, "unauthorized", pre.reason);
    }
    const settings = settingsFor(env);
    const read = await readBodyLimited(c.req.raw, settings.settings.STAGE_MAX_BODY_BYTES);
    if (!read.ok) return payloadTooLarge(c, settings.settings.STAGE_MAX_BODY_BYTES, "STAGE_MAX_BODY_BYTES");
    const raw = decoder.decode(read.bytes);
    if (!env.IN_PROCESS) {
      const verdict = await verifyStageSignature(env, c.req.method, new URL(c.req.url).pathname, raw, c.req.header());
      if (!verdict.ok) return apiError(c, 401, "unauthorized", verdict.reason);
      // First use of this nonce within the signature window, or a replay: then nothing runs.
      const fresh = await redisFromEnv(env).set(settings.keys.stageNonce(verdict.nonce), verdict.kid, { nx: true, px: NONCE_TTL_MS });
      if (fresh === null) return apiError(c, 409, "replayed", "this signed request was already received (its nonce is spent); the worker-host signs every request afresh");
    }
    if (jsonDepthExceeds(raw, MAX_STAGE_JSON_DEPTH)) return apiError(c, 400, "invalid_json", `JSON nests deeper than ${MAX_STAGE_JSON_DEPTH} levels`);
    let body: unknown;
    try {
      body = JSON.parse(raw);
    } catch {
      return apiError(c, 400, "invalid_json", "request body is not valid JSON");
    }
    const parsed = StageRequest.safeParse(body);
    if (!parsed.success) return apiError(c, 400, "validation_failed", "invalid stage request", toIssues(parsed.error));
    const mismatched = parsed.data.envelopes.findIndex((e) => e.stage !== name);
    if (mismatched >= 0) {
      return apiError(c, 400, "validation_failed", `envelopes[${mismatched}].stage is ${parsed.data.envelopes[mismatched].stage}, not ${name}`);
    }
    const results = await runStageBatch(pipeline, name, env, parsed.data.envelopes, { background: waitUntilOf(c) });
    return c.json({ results });
  };
}
