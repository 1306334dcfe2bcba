/**
 * A collector stand-in for tests: an OTLP/HTTP trace receiver on a local port
 * that decodes both encodings of `POST /v1/traces`, `application/json` and
 * `application/x-protobuf` (ExportTraceServiceRequest, decoded here from the
 * wire format field by field), into one span shape.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}
export interface OtlpAttribute {
  key: string;
  value: OtlpValue;
}
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  startTimeUnixNano?: string;
  endTimeUnixNano?: string;
  attributes?: OtlpAttribute[];
  events?: Array<{ name: string; attributes?: OtlpAttribute[] }>;
  status?: { code?: number; message?: string };
  /** The resource's service.name (set by the receiver). */
  service?: string;
}

export interface OtlpReceiver {
  url: string;
  spans: OtlpSpan[];
  /** Requests received per content type ("json", "protobuf"). */
  requests: { json: number; protobuf: number };
  close(): Promise<void>;
}

/** Reads protobuf wire format: each field as [number, wire type, value]. */
function* fields(buf: Uint8Array): Generator<[number, number, bigint | Uint8Array]> {
  let pos = 0;
  const varint = (): bigint => {
    let out = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (pos >= buf.length) throw new Error("truncated varint");
      const b = buf[pos++];
      out |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return out;
    }
  };
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  while (pos < buf.length) {
    const tag = Number(varint());
    const field = tag >>> 3;
    const wire = tag & 7;
    if (wire === 0) yield [field, wire, varint()];
    else if (wire === 1) {
      yield [field, wire, view.getBigUint64(pos, true)];
      pos += 8;
    } else if (wire === 2) {
      const len = Number(varint());
      if (pos + len > buf.length) throw new Error("truncated field");
      yield [field, wire, buf.subarray(pos, pos + len)];
      pos += len;
    } else if (wire === 5) {
      yield [field, wire, BigInt(view.getUint32(pos, true))];
      pos += 4;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
}

const utf8 = new TextDecoder();
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const bytes = (v: bigint | Uint8Array) => v as Uint8Array;

function decodeValue(buf: Uint8Array): OtlpValue {
  const out: OtlpValue = {};
  for (const [f, wire, v] of fields(buf)) {
    if (f === 1) out.stringValue = utf8.decode(bytes(v));
    else if (f === 2) out.boolValue = v !== 0n;
    else if (f === 3) out.intValue = BigInt.asIntN(64, v as bigint).toString();
    else if (f === 4 && wire === 1) {
      const dv = new DataView(new ArrayBuffer(8));
      dv.setBigUint64(0, v as bigint, true);
      out.doubleValue = dv.getFloat64(0, true);
    }
  }
  return out;
}

function decodeKeyValue(buf: Uint8Array): OtlpAttribute {
  let key = "";
  let value: OtlpValue = {};
  for (const [f, , v] of fields(buf)) {
    if (f === 1) key = utf8.decode(bytes(v));
    else if (f === 2) value = decodeValue(bytes(v));
  }
  return { key, value };
}

function decodeSpan(buf: Uint8Array): OtlpSpan {
  const span: OtlpSpan = { traceId: "", spanId: "", name: "", attributes: [], events: [] };
  for (const [f, , v] of fields(buf)) {
    if (f === 1) span.traceId = hex(bytes(v));
    else if (f === 2) span.spanId = hex(bytes(v));
    else if (f === 4 && bytes(v).length > 0) span.parentSpanId = hex(bytes(v));
    else if (f === 5) span.name = utf8.decode(bytes(v));
    else if (f === 7) span.startTimeUnixNano = String(v);
    else if (f === 8) span.endTimeUnixNano = String(v);
    else if (f === 9) span.attributes!.push(decodeKeyValue(bytes(v)));
    else if (f === 11) {
      const event: { name: string; attributes: OtlpAttribute[] } = { name: "", attributes: [] };
      for (const [ef, , ev] of fields(bytes(v))) {
        if (ef === 2) event.name = utf8.decode(bytes(ev));
        else if (ef === 3) event.attributes.push(decodeKeyValue(bytes(ev)));
      }
      span.events!.push(event);
    } else if (f === 15) {
      span.status = {};
      for (const [sf, , sv] of fields(bytes(v))) {
        if (sf === 2) span.status.message = utf8.decode(bytes(sv));
        else if (sf === 3) span.status.code = Number(sv);
      }
    }
  }
  return span;
}

/** ExportTraceServiceRequest (protobuf) -> spans, each with its resource's service.name. */
export function decodeTraceRequest(buf: Uint8Array): OtlpSpan[] {
  const spans: OtlpSpan[] = [];
  for (const [f, , rs] of fields(buf)) {
    if (f !== 1) continue;
    let service: string | undefined;
    const inResource: OtlpSpan[] = [];
    for (const [rf, , rv] of fields(bytes(rs))) {
      if (rf === 1) {
        for (const [af, , av] of fields(bytes(rv))) {
          if (af !== 1) continue;
          const kv = decodeKeyValue(bytes(av));
          if (kv.key === "service.name") service = kv.value.stringValue;
        }
      } else if (rf === 2) {
        for (const [sf, , sv] of fields(bytes(rv))) if (sf === 2) inResource.push(decodeSpan(bytes(sv)));
      }
    }
    for (const s of inResource) spans.push({ ...s, service });
  }
  return spans;
}

/** The same request in OTLP JSON (ids as hex, as the spec's JSON mapping has them). */
function jsonTraceRequest(raw: string): OtlpSpan[] {
  const body = JSON.parse(raw) as { resourceSpans: Array<{ resource?: { attributes?: OtlpAttribute[] }; scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
  const spans: OtlpSpan[] = [];
  for (const rs of body.resourceSpans) {
    const service = rs.resource?.attributes?.find((a) => a.key === "service.name")?.value.stringValue;
    for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ ...s, ...(s.parentSpanId ? {} : { parentSpanId: undefined }), service });
  }
  return spans;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: OtlpSpan[] = [];
  const requests = { json: 0, protobuf: 0 };
  const server: Server = createServer(async (req, res) => {
    const parts: Buffer[] = [];
    for await (const part of req) parts.push(part as Buffer);
    const body = Buffer.concat(parts);
    const type = req.headers["content-type"] ?? "";
    if (req.method !== "POST" || req.url !== "/v1/traces") return void res.writeHead(404).end();
    try {
      if (/json/.test(type)) {
        spans.push(...jsonTraceRequest(body.toString("utf8")));
        requests.json++;
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      } else if (/protobuf/.test(type)) {
        spans.push(...decodeTraceRequest(new Uint8Array(body)));
        requests.protobuf++;
        res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
      } else res.writeHead(415).end();
    } catch (err) {
      res.writeHead(400).end(String(err));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans,
    requests,
    close: () => new Promise((r) => server.close(() => r())),
  };
}
