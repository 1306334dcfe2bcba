/**
 * Spans from inside handlers (tool calls, cache hits and misses, lock waits,
 * LLM calls), children of the hop's span that the worker-host names in the
 * envelope (`spanId`), so they join the run's trace wherever the handler runs.
 * Web-standard code only: in workerd a batch's spans are posted to
 * `<OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces` with fetch (OTLP/HTTP, protobuf or
 * JSON); in-process the host hands a sink in `env.SPAN_SINK` that feeds its
 * own SDK exporter. With tracing off (no `spanId`, or nowhere to send), the
 * handler gets no scope and nothing here runs.
 */
import { randomHex } from "./envelope";

export type SpanAttributes = Record<string, string | number | boolean>;

/** A finished span, as a handler recorded it. */
export interface SpanRecord {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  /** Epoch milliseconds. */
  startMs: number;
  endMs: number;
  attributes: SpanAttributes;
  events?: Array<{ name: string; atMs: number; attributes?: SpanAttributes }>;
  /** Set when the span's work threw: the error's message. */
  error?: string;
}

/** Where a batch's handler spans go (the host's SDK in-process; fetch to a collector in workerd). */
export interface SpanSink {
  export(spans: SpanRecord[]): Promise<void> | void;
}

/** Opens child spans of the current span. */
export interface TraceScope {
  /**
   * Runs `fn` as a child span named `name` (ended when `fn` settles, with an
   * error status when it throws); `fn` gets the span to add attributes or grandchildren.
   */
  span<T>(name: string, fn: (span: ActiveSpan) => Promise<T> | T, attributes?: SpanAttributes): Promise<T>;
}

/** A span while its work runs. */
export interface ActiveSpan extends TraceScope {
  setAttribute(key: string, value: string | number | boolean): void;
  addEvent(name: string, attributes?: SpanAttributes): void;
}

/**
 * `fn` inside a child span of `scope`, or just `fn` when tracing is off
 * (`scope` undefined): handlers and tools call this, so untraced runs pay one check.
 * @example
 * const answer = await inSpan(ctx.trace, "llm call", async (span) => {
 *   span?.setAttribute("gen_ai.request.model", model);
 *   return callModel();
 * });
 */
export function inSpan<T>(scope: TraceScope | undefined, name: string, fn: (span?: ActiveSpan) => Promise<T> | T, attributes?: SpanAttributes): Promise<T> {
  if (!scope) return Promise.resolve().then(() => fn(undefined));
  return scope.span(name, fn, attributes);
}

/** A scope whose spans are children of `parentSpanId` in `traceId`, recorded into `out`. */
export function traceScope(out: SpanRecord[], traceId: string, parentSpanId: string): TraceScope {
  return {
    async span<T>(name: string, fn: (span: ActiveSpan) => Promise<T> | T, attributes?: SpanAttributes): Promise<T> {
      const record: SpanRecord = { traceId, spanId: randomHex(8), parentSpanId, name, startMs: Date.now(), endMs: 0, attributes: { ...attributes } };
      const inner = traceScope(out, traceId, record.spanId);
      const active: ActiveSpan = {
        span: inner.span,
        setAttribute: (key, value) => void (record.attributes[key] = value),
        addEvent: (eventName, eventAttributes) => void (record.events ??= []).push({ name: eventName, atMs: Date.now(), ...(eventAttributes ? { attributes: eventAttributes } : {}) }),
      };
      try {
        return await fn(active);
      } catch (err) {
        record.error = err instanceof Error ? err.message : String(err);
        throw err;
      } finally {
        record.endMs = Date.now();
        out.push(record);
      }
    },
  };
}

/** The OTLP settings a Worker reads (the standard variables; docs/configuration.md). */
export interface OtlpSettings {
  OTEL_EXPORTER_OTLP_ENDPOINT?: string;
  OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf" | "http/json";
  OTEL_EXPORTER_OTLP_HEADERS?: string;
  OTEL_SERVICE_NAME: string;
}

/** `key=value,key2=value2` (OTEL_EXPORTER_OTLP_HEADERS), values URL-decoded. */
export function parseOtlpHeaders(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (text ?? "").split(",")) {
    const at = part.indexOf("=");
    if (at > 0) out[decodeURIComponent(part.slice(0, at).trim())] = decodeURIComponent(part.slice(at + 1).trim());
  }
  return out;
}

/**
 * A sink that posts spans to `<endpoint>/v1/traces` with fetch, in the
 * configured encoding. An export that fails is logged, never thrown: a
 * collector outage must not fail a stage.
 */
export function fetchSpanSink(settings: OtlpSettings, { timeoutMs = 5000 }: { timeoutMs?: number } = {}): SpanSink | undefined {
  const endpoint = settings.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!endpoint) return undefined;
  const url = `${endpoint.replace(/\/+$/, "")}/v1/traces`;
  const headers = parseOtlpHeaders(settings.OTEL_EXPORTER_OTLP_HEADERS);
  const json = settings.OTEL_EXPORTER_OTLP_PROTOCOL === "http/json";
  return {
    async export(spans) {
      if (spans.length === 0) return;
      try {
        const body = json ? JSON.stringify(otlpJson(spans, settings.OTEL_SERVICE_NAME)) : otlpProtobuf(spans, settings.OTEL_SERVICE_NAME);
        const res = await fetch(url, { method: "POST", headers: { ...headers, "content-type": json ? "application/json" : "application/x-protobuf" }, body, signal: AbortSignal.timeout(timeoutMs) });
        if (!res.ok) console.warn(`OTLP export to ${url} answered ${res.status}`);
        await res.body?.cancel();
      } catch (err) {
        console.warn(`OTLP export to ${url} failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    },
  };
}

const nanos = (ms: number): bigint => BigInt(Math.round(ms * 1000)) * 1000n;
const SPAN_KIND_INTERNAL = 1;
const STATUS_ERROR = 2;

type JsonValue = { stringValue: string } | { boolValue: boolean } | { intValue: string } | { doubleValue: number };
const jsonValue = (v: string | number | boolean): JsonValue =>
  typeof v === "string" ? { stringValue: v } : typeof v === "boolean" ? { boolValue: v } : Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
const jsonAttributes = (a: SpanAttributes | undefined) => Object.entries(a ?? {}).map(([key, value]) => ({ key, value: jsonValue(value) }));

/** ExportTraceServiceRequest in OTLP JSON (ids as hex, times as decimal strings of nanoseconds). */
export function otlpJson(spans: SpanRecord[], serviceName: string): unknown {
  return {
    resourceSpans: [
      {
        resource: { attributes: jsonAttributes({ "service.name": serviceName }) },
        scopeSpans: [
          {
            scope: { name: "edgepipe" },
            spans: spans.map((s) => ({
              traceId: s.traceId,
              spanId: s.spanId,
              parentSpanId: s.parentSpanId,
              name: s.name,
              kind: SPAN_KIND_INTERNAL,
              startTimeUnixNano: String(nanos(s.startMs)),
              endTimeUnixNano: String(nanos(s.endMs)),
              attributes: jsonAttributes(s.attributes),
              events: (s.events ?? []).map((e) => ({ name: e.name, timeUnixNano: String(nanos(e.atMs)), attributes: jsonAttributes(e.attributes) })),
              status: s.error !== undefined ? { code: STATUS_ERROR, message: s.error } : {},
            })),
          },
        ],
      },
    ],
  };
}

/** Protobuf wire-format writer: just the field kinds OTLP traces use. */
class ProtoWriter {
  private bytes: number[] = [];
  private static readonly utf8 = new TextEncoder();
  private varint(n: bigint): void {
    for (;;) {
      const low = Number(n & 0x7fn);
      n >>= 7n;
      if (n === 0n) return void this.bytes.push(low);
      this.bytes.push(low | 0x80);
    }
  }
  private tag(field: number, wire: number): void {
    this.varint(BigInt((field << 3) | wire));
  }
  uint(field: number, n: number | bigint): this {
    this.tag(field, 0);
    this.varint(BigInt.asUintN(64, BigInt(n)));
    return this;
  }
  fixed64(field: number, n: bigint): this {
    this.tag(field, 1);
    for (let i = 0n; i < 8n; i++) this.bytes.push(Number((n >> (8n * i)) & 0xffn));
    return this;
  }
  double(field: number, v: number): this {
    const view = new DataView(new ArrayBuffer(8));
    view.setFloat64(0, v, true);
    return this.fixed64(field, view.getBigUint64(0, true));
  }
  raw(field: number, b: Uint8Array | number[]): this {
    this.tag(field, 2);
    this.varint(BigInt(b.length));
    for (const x of b) this.bytes.push(x);
    return this;
  }
  string(field: number, s: string): this {
    return this.raw(field, ProtoWriter.utf8.encode(s));
  }
  hex(field: number, h: string): this {
    const b: number[] = [];
    for (let i = 0; i < h.length; i += 2) b.push(parseInt(h.slice(i, i + 2), 16));
    return this.raw(field, b);
  }
  message(field: number, m: ProtoWriter): this {
    return this.raw(field, m.bytes);
  }
  finish(): Uint8Array<ArrayBuffer> {
    return Uint8Array.from(this.bytes);
  }
}

function protoAttributes(w: ProtoWriter, field: number, a: SpanAttributes | undefined): void {
  for (const [key, v] of Object.entries(a ?? {})) {
    const value = new ProtoWriter();
    if (typeof v === "string") value.string(1, v);
    else if (typeof v === "boolean") value.uint(2, v ? 1 : 0);
    else if (Number.isInteger(v)) value.uint(3, v);
    else value.double(4, v);
    w.message(field, new ProtoWriter().string(1, key).message(2, value));
  }
}

/** ExportTraceServiceRequest in protobuf (opentelemetry/proto/collector/trace/v1). */
export function otlpProtobuf(spans: SpanRecord[], serviceName: string): Uint8Array<ArrayBuffer> {
  const resource = new ProtoWriter();
  protoAttributes(resource, 1, { "service.name": serviceName });
  const scopeSpans = new ProtoWriter().message(1, new ProtoWriter().string(1, "edgepipe"));
  for (const s of spans) {
    const span = new ProtoWriter().hex(1, s.traceId).hex(2, s.spanId).hex(4, s.parentSpanId).string(5, s.name).uint(6, SPAN_KIND_INTERNAL).fixed64(7, nanos(s.startMs)).fixed64(8, nanos(s.endMs));
    protoAttributes(span, 9, s.attributes);
    for (const e of s.events ?? []) {
      const event = new ProtoWriter().fixed64(1, nanos(e.atMs)).string(2, e.name);
      protoAttributes(event, 3, e.attributes);
      span.message(11, event);
    }
    if (s.error !== undefined) span.message(15, new ProtoWriter().string(2, s.error).uint(3, STATUS_ERROR));
    scopeSpans.message(2, span);
  }
  return new ProtoWriter().message(1, new ProtoWriter().message(1, resource).message(2, scopeSpans)).finish();
}
