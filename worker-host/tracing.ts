/**
 * OpenTelemetry traces of the worker-host (official @opentelemetry/* SDK,
 * OTLP/HTTP): one trace per run, one span per hop (a delivery of an envelope
 * to its stage) with `queue wait`, `handler` and `commit` child spans, retries
 * and dead letters as span events with the error, and the run's `ingest` span
 * (the enqueue) as the root or as a child of the caller's `traceparent`.
 * The span ids travel in the envelopes, so a hop's span is the parent of the
 * next hop's wherever the handler ran (in-process or in workerd).
 * Handlers add their own spans (tool calls, LLM calls) under the hop span:
 * in-process through `spanSink`, from workerd with their own fetch exporter.
 * Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set; unset, nothing is built.
 */
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import { context, ROOT_CONTEXT, trace, SpanStatusCode, TraceFlags, type Context as OtelContext } from "@opentelemetry/api";
import type { IdGenerator, SpanExporter } from "@opentelemetry/sdk-trace-base";
import { randomHex, type Envelope } from "../functions/envelope";
import type { StageItemResult } from "../functions/envelope";
import { parseOtlpHeaders, type SpanSink } from "../functions/tracing";

/** How each dispatched envelope ended. */
export type HopOutcome = { kind: "committed" } | { kind: "retry"; error: string } | { kind: "dead-lettered"; error: string };

/**
 * The span id of a run's `ingest` span: the first 8 bytes of SHA-256(trace id, run id), so
 * every host derives the same one and enqueue mints none (a caller's trace may hold many runs).
 */
export function ingestSpanId(traceId: string, runId: string): string {
  const id = createHash("sha256").update(`${traceId}:${runId}`).digest("hex").slice(0, 16);
  return /^0+$/.test(id) ? "0000000000000001" : id;
}

/** What the stage worker calls around a batch (worker-host/stage-worker.ts). */
export interface HopTracer {
  /** Before dispatch: names each envelope's hop span (`envelope.spanId`) so its outputs become children. */
  begin(stage: string, envelopes: Envelope[], { entry }: { entry: boolean }): HopBatch;
}

export interface HopBatch {
  /** After the commit, retry or dead letter of the batch. */
  end(results: readonly StageItemResult[], outcomes: readonly HopOutcome[], settle: { startedAt: number; endedAt: number }): void;
}

/**
 * The SDK, resources and OTLP exporters, loaded by the first startTracing: with
 * tracing off (the default) no process pays for them (about half a second of
 * start-up). These packages ship CommonJS as their main entry, so this loads
 * the very modules an `import` would.
 */
const requireSdk = createRequire(import.meta.url);
function otelSdk() {
  return {
    ...(requireSdk("@opentelemetry/sdk-trace-base") as typeof import("@opentelemetry/sdk-trace-base")),
    ...(requireSdk("@opentelemetry/resources") as typeof import("@opentelemetry/resources")),
    OtlpProtoExporter: (requireSdk("@opentelemetry/exporter-trace-otlp-proto") as typeof import("@opentelemetry/exporter-trace-otlp-proto")).OTLPTraceExporter,
    OtlpJsonExporter: (requireSdk("@opentelemetry/exporter-trace-otlp-http") as typeof import("@opentelemetry/exporter-trace-otlp-http")).OTLPTraceExporter,
  };
}

/** An IdGenerator that hands out the span id the caller preset (the one the envelopes carry), else a random one. */
class PresetIdGenerator implements IdGenerator {
  next: string | undefined;
  /** The trace id of the next root span (the run's, which the envelopes carry). */
  nextTrace: string | undefined;
  constructor(private readonly random: IdGenerator) {}
  generateTraceId(): string {
    const id = this.nextTrace;
    this.nextTrace = undefined;
    return id ?? this.random.generateTraceId();
  }
  generateSpanId(): string {
    const id = this.next;
    this.next = undefined;
    return id ?? this.random.generateSpanId();
  }
}

export interface TracingOptions {
  /** OTLP/HTTP base URL (OTEL_EXPORTER_OTLP_ENDPOINT); traces go to `<endpoint>/v1/traces`. */
  endpoint: string;
  /** `http/protobuf` (default) or `http/json` (OTEL_EXPORTER_OTLP_PROTOCOL). */
  protocol?: "http/protobuf" | "http/json";
  /** `key=value,key2=value2` (OTEL_EXPORTER_OTLP_HEADERS). */
  headers?: string;
  serviceName?: string;
}

export interface HostTracing {
  tracer: HopTracer;
  /** Takes the spans of in-process handlers (env.SPAN_SINK) into the same exporter. */
  spanSink: SpanSink;
  /** Exports what is buffered (the batch processor also does it every OTEL_BSP_SCHEDULE_DELAY ms). */
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}

/** Tracing from the standard variables; undefined (zero cost) when OTEL_EXPORTER_OTLP_ENDPOINT is unset. */
export function tracingFromEnv(env: { OTEL_EXPORTER_OTLP_ENDPOINT?: string; OTEL_EXPORTER_OTLP_PROTOCOL?: "http/protobuf" | "http/json"; OTEL_EXPORTER_OTLP_HEADERS?: string; OTEL_SERVICE_NAME?: string }): HostTracing | undefined {
  if (!env.OTEL_EXPORTER_OTLP_ENDPOINT) return undefined;
  return startTracing({ endpoint: env.OTEL_EXPORTER_OTLP_ENDPOINT, protocol: env.OTEL_EXPORTER_OTLP_PROTOCOL, headers: env.OTEL_EXPORTER_OTLP_HEADERS, serviceName: env.OTEL_SERVICE_NAME });
}

/** Builds the SDK pipeline (provider, batch processor, OTLP exporter) and the hop tracer on it. */
export function startTracing({ endpoint, protocol = "http/protobuf", headers, serviceName = "edgepipe-worker-host" }: TracingOptions): HostTracing {
  const url = `${endpoint.replace(/\/+$/, "")}/v1/traces`;
  const exporterOptions = { url, headers: parseOtlpHeaders(headers) };
  const { BasicTracerProvider, BatchSpanProcessor, RandomIdGenerator, resourceFromAttributes, OtlpJsonExporter, OtlpProtoExporter } = otelSdk();
  const exporter: SpanExporter = protocol === "http/json" ? new OtlpJsonExporter(exporterOptions) : new OtlpProtoExporter(exporterOptions);
  const ids = new PresetIdGenerator(new RandomIdGenerator());
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": serviceName }),
    idGenerator: ids,
    spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: 500, maxExportBatchSize: 512, maxQueueSize: 20_000 })],
  });
  const tracer = provider.getTracer("edgepipe");

  const parentContext = (traceId: string, spanId: string | undefined): OtelContext => {
    if (spanId) return trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId, traceFlags: TraceFlags.SAMPLED, isRemote: true });
    // A root span of the run's own trace id.
    ids.nextTrace = traceId;
    return ROOT_CONTEXT;
  };

  const hopTracer: HopTracer = {
    begin(stage, envelopes, { entry }) {
      const dispatchedAt = Date.now();
      const spans = envelopes.map((e) => {
        // The run's ingest span, once, when the entry stage first sees the run. Its id is derived from
        // the run (nothing minted at enqueue), so a retried entry hop finds the same parent.
        const parentSpanId = e.parentSpanId ?? (entry ? ingestSpanId(e.traceId, e.runId) : undefined);
        if (entry && e.attempt === 1 && !e.parentSpanId) {
          ids.next = parentSpanId;
          const ingest = tracer.startSpan("ingest", { startTime: e.createdAt, attributes: { "edgepipe.run_id": e.runId, "edgepipe.stage": stage } }, parentContext(e.traceId, e.callerSpanId));
          ingest.end(e.createdAt);
        }
        const spanId = randomHex(8);
        e.spanId = spanId;
        ids.next = spanId;
        const span = tracer.startSpan(
          stage,
          { startTime: e.attempt === 1 ? Math.min(e.createdAt, dispatchedAt) : dispatchedAt, attributes: { "edgepipe.run_id": e.runId, "edgepipe.stage": stage, "edgepipe.attempt": e.attempt, "messaging.system": "valkey-streams" } },
          parentContext(e.traceId, parentSpanId),
        );
        return span;
      });
      return {
        end(results, outcomes, settle) {
          for (let k = 0; k < spans.length; k++) {
            const span = spans[k];
            const e = envelopes[k];
            const inner = trace.setSpan(context.active(), span);
            if (e.attempt === 1) tracer.startSpan("queue wait", { startTime: e.createdAt }, inner).end(dispatchedAt);
            else span.addEvent("redelivered", { "edgepipe.attempt": e.attempt }, dispatchedAt);
            const r = results[k];
            const handlerEnd = dispatchedAt + (r?.ms ?? 0);
            const h = tracer.startSpan("handler", { startTime: dispatchedAt }, inner);
            if (r && !r.ok) h.setStatus({ code: SpanStatusCode.ERROR, message: r.error.message });
            h.end(handlerEnd);
            tracer.startSpan("commit", { startTime: settle.startedAt }, inner).end(settle.endedAt);
            const o = outcomes[k];
            if (o.kind === "retry") {
              span.addEvent("retry", { "exception.message": o.error, "edgepipe.attempt": e.attempt }, settle.endedAt);
              span.setStatus({ code: SpanStatusCode.ERROR, message: o.error });
            } else if (o.kind === "dead-lettered") {
              span.addEvent("dead-lettered", { "exception.message": o.error, "edgepipe.attempt": e.attempt }, settle.endedAt);
              span.setStatus({ code: SpanStatusCode.ERROR, message: o.error });
            }
            span.end(settle.endedAt);
          }
        },
      };
    },
  };
  const spanSink: SpanSink = {
    export(records) {
      for (const r of records) {
        ids.next = r.spanId;
        const span = tracer.startSpan(r.name, { startTime: r.startMs, attributes: r.attributes }, parentContext(r.traceId, r.parentSpanId));
        for (const e of r.events ?? []) span.addEvent(e.name, e.attributes, e.atMs);
        if (r.error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: r.error });
        span.end(r.endMs);
      }
    },
  };
  return {
    tracer: hopTracer,
    spanSink,
    flush: () => provider.forceFlush(),
    shutdown: () => provider.shutdown(),
  };
}
