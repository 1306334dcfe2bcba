/**
 * OpenTelemetry traces of news runs, received over OTLP/HTTP by a collector
 * stand-in started here (tests/helpers/otlp.ts: it decodes http/protobuf, the
 * default, which the in-process host sends, and http/json, which the host of
 * the workerd case is set to): 100 runs form 100 traces, each an
 * `ingest` span and one span per hop (fetcher -> classifier -> enricher ->
 * fanout) chained parent to child, each hop with `queue wait`, `handler` and
 * `commit` children; one run retried once (its enricher's summary endpoint
 * fails the first call: two enricher spans, the first with a `retry` event)
 * and one dead-lettered (a `dead-lettered` event); a caller's `traceparent`
 * is joined; the enricher's handler adds `tool enrich` (cache miss, a hit on
 * the retry) and `llm summary` spans under its hop span, through the host's
 * exporter in-process and with its own fetch exporter from workerd. The tool
 * cache's lock wait is a span; with tracing off, no envelope carries a span id.
 */
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomHex } from "../functions/envelope";
import { createKeys } from "../functions/keys";
import { NewsSettings } from "../functions/news/config";
import { app, pipeline } from "../functions/news/index";
import { loadConfig } from "../worker-host/config";
import { startHttpModeStack, type HttpModeStack } from "../worker-host/http-mode";
import { startRuntime, type Runtime } from "../worker-host/runtime";
import { newsWorkerBundle } from "./helpers/news-bundle";
import { cachedTool } from "../functions/tools/cache";
import { classifyWithLlm } from "../functions/news/llm";
import { fetchSpanSink, traceScope, type SpanRecord } from "../functions/tracing";
import { eventually, startTestValkey, testKeys, type TestValkey } from "./helpers/valkey";
import { startOtlpReceiver, type OtlpSpan } from "./helpers/otlp";

/** A summary endpoint that fails the first call for a title containing RETRY-ME, and answers the rest with a short streamed summary. */
async function startSummaryLlm(): Promise<{ url: string; close: () => Promise<void> }> {
  let failed = false;
  const server: Server = createServer(async (req, res) => {
    let raw = "";
    for await (const part of req) raw += part;
    if (!failed && raw.includes("RETRY-ME")) {
      failed = true;
      res.writeHead(503).end("overloaded, try later");
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream" });
    for (const t of ["A ", "short ", "summary."]) res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: t } }] })}\n\n`);
    res.end("data: [DONE]\n\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, close: () => new Promise((r) => server.close(() => r())) };
}

const attr = (s: OtlpSpan, key: string) => {
  const v = s.attributes?.find((a) => a.key === key)?.value;
  return v?.stringValue ?? (v?.intValue !== undefined ? Number(v.intValue) : undefined);
};

let valkey: TestValkey;
let scriptPath: string;

beforeAll(async () => {
  const [v, bundle] = await Promise.all([startTestValkey(), newsWorkerBundle()]);
  valkey = v;
  scriptPath = bundle.scriptPath;
}, 180_000);

afterAll(async () => {
  await valkey?.stop();
});

const HOPS = ["fetcher", "classifier", "enricher", "fanout"] as const;

describe.each(["in-process", "workerd"] as const)("OpenTelemetry traces of 100 news runs: %s", (mode) => {
  it("form 100 traces with ingest -> fetcher -> classifier -> enricher -> fanout links, a retry and a dead letter as events, the caller's traceparent joined", async () => {
    const receiver = await startOtlpReceiver();
    const llm = await startSummaryLlm();
    const vars = {
      VALKEY_URL: valkey.url, PORT: "0", HOST: "127.0.0.1", DEMO: "off", KEY_PREFIX: `ot${randomHex(3)}`, BLOCK_MS: "100", RETRY_BACKOFF_MS: "50",
      LLM_SUMMARY: "on", LLM_SUMMARY_BASE_URL: llm.url, ENRICH_CACHE: "on", OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_SERVICE_NAME: `edgepipe-test-${mode}`,
      // The host exports with the default protocol (http/protobuf) in-process, http/json with workerd: both encodings are decoded by the receiver.
      ...(mode === "workerd" ? { UPSTASH_REDIS_REST_URL: "http://127.0.0.1:0", OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" } : {}),
    };
    const config = loadConfig(vars, { appSettings: NewsSettings });
    let stack: Runtime | HttpModeStack | undefined;
    try {
      // In workerd the handlers export their own spans: here in http/protobuf (the host's are http/json), so both encodings of one run's spans meet in the receiver.
      stack = mode === "in-process" ? await startRuntime({ config, pipeline, app, log: () => {} }) : await startHttpModeStack({ config, pipeline, workerd: { kind: "miniflare", scriptPath }, vars: { OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf" }, log: () => {} });
      const url = stack.url;
      const post = async (path: string, body: unknown, headers: Record<string, string> = {}) => {
        const res = await fetch(`${url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
        expect(res.status).toBe(202);
        return ((await res.json()) as { runIds: string[] }).runIds;
      };
      const tag = randomHex(4);
      const plain = await post("/v1/articles", { articles: Array.from({ length: 98 }, (_, i) => ({ title: `Story ${i} of batch ${tag}`, body: `Body ${i} ${tag}: the council voted on item ${i} and markets moved ${i} points.` })) });
      const callerTrace = randomHex(16);
      const callerSpan = randomHex(8);
      const [retried] = await post("/v1/articles", { articles: [{ title: `RETRY-ME story ${tag}`, body: "A story whose summary call fails once." }] }, { traceparent: `00-${callerTrace}-${callerSpan}-01` });
      const [dead] = await post("/v1/runs", { payloads: [{ title: "", body: 42 }] });
      const all = [...plain, retried, dead];
      expect(new Set(all).size).toBe(100);

      // Every run ends, and its spans arrive (the batch processor exports every 500 ms).
      const ended = new Set<string>();
      await eventually(async () => {
        for (const runId of all) {
          if (ended.has(runId)) continue; // a run that ended stays ended: ask only about the rest
          const run = (await (await fetch(`${url}/v1/runs/${runId}`)).json()) as { status: string };
          if (run.status === "running") return undefined;
          ended.add(runId);
        }
        return true;
      }, { timeoutMs: 120_000, stepMs: 200 });
      const hopSpans = () => receiver.spans.filter((s) => s.name === "fanout" || s.name === "fetcher");
      await eventually(() => (hopSpans().filter((s) => s.name === "fanout").length >= 99 && hopSpans().filter((s) => s.name === "fetcher").length >= 100 && receiver.spans.filter((s) => s.name === "llm summary").length >= 100 ? true : undefined), { timeoutMs: 60_000, stepMs: 100 });
      await new Promise((r) => setTimeout(r, 1200)); // the last children of the last hops

      const byRun = new Map<string, OtlpSpan[]>();
      for (const s of receiver.spans) {
        const runId = attr(s, "edgepipe.run_id");
        if (typeof runId === "string") byRun.set(runId, [...(byRun.get(runId) ?? []), s]);
      }
      const traces = new Set(all.map((runId) => byRun.get(runId)?.[0]?.traceId));
      expect(traces.size).toBe(100);
      expect(traces.has(undefined)).toBe(false);
      const children = (span: OtlpSpan) => receiver.spans.filter((s) => s.parentSpanId === span.spanId && s.traceId === span.traceId).map((s) => s.name).filter((n) => !(HOPS as readonly string[]).includes(n)).sort();

      for (const runId of [...plain, retried]) {
        const spans = byRun.get(runId)!;
        expect(new Set(spans.map((s) => s.traceId)).size).toBe(1);
        const ingest = spans.filter((s) => s.name === "ingest");
        expect(ingest).toHaveLength(1);
        let parent = ingest[0];
        for (const hop of HOPS) {
          const hopSpans = spans.filter((s) => s.name === hop);
          expect(hopSpans.length, `${runId} ${hop}`).toBe(runId === retried && hop === "enricher" ? 2 : 1);
          for (const h of hopSpans) expect(h.parentSpanId, `${runId} ${hop} parent`).toBe(parent.spanId);
          const last = hopSpans.find((h) => attr(h, "edgepipe.attempt") === hopSpans.length)!;
          const handlerSpans = hop === "enricher" ? ["llm summary", "tool enrich"] : [];
          expect(children(last), `${runId} ${hop} children`).toEqual([...(hopSpans.length > 1 ? ["commit", "handler"] : ["commit", "handler", "queue wait"]), ...handlerSpans].sort());
          if (hop === "enricher") {
            // Spans from inside the handler: the tool cache's miss (a hit on the retry: the failed attempt had stored it) and the LLM call.
            const inside = (h: OtlpSpan, name: string) => receiver.spans.find((s) => s.parentSpanId === h.spanId && s.name === name)!;
            expect(attr(inside(last, "tool enrich"), "edgepipe.tool.cache")).toBe(hopSpans.length > 1 ? "hit" : "miss");
            expect(attr(inside(last, "llm summary"), "edgepipe.llm.chunks")).toBe(3);
            expect(attr(inside(last, "llm summary"), "gen_ai.request.model")).toBe("gpt-4o-mini");
            // One trace: the handler's spans (from workerd's own exporter there) carry the hop's trace id.
            expect([inside(last, "tool enrich").traceId, inside(last, "llm summary").traceId]).toEqual([last.traceId, last.traceId]);
            if (mode === "workerd") expect(inside(last, "llm summary").service).toBe("edgepipe-stages");
          }
          parent = last;
        }
      }
      // The retried run joined the caller's trace; its first enricher attempt carries the retry event with the error.
      const r = byRun.get(retried)!;
      expect(r[0].traceId).toBe(callerTrace);
      expect(r.find((s) => s.name === "ingest")!.parentSpanId).toBe(callerSpan);
      const firstEnricher = r.find((s) => s.name === "enricher" && attr(s, "edgepipe.attempt") === 1)!;
      const retryEvent = firstEnricher.events?.find((e) => e.name === "retry");
      expect(retryEvent).toBeDefined();
      expect(String(retryEvent!.attributes?.find((a) => a.key === "exception.message")?.value.stringValue)).toMatch(/503/);
      expect(r.find((s) => s.name === "enricher" && attr(s, "edgepipe.attempt") === 2)!.events?.find((e) => e.name === "redelivered")).toBeDefined();
      // The failed LLM call is an error span under the first attempt.
      const failedLlm = receiver.spans.find((s) => s.name === "llm summary" && s.parentSpanId === firstEnricher.spanId)!;
      expect(failedLlm.status?.code).toBe(2);
      expect(failedLlm.status?.message).toMatch(/503/);
      // The dead-lettered run: ingest -> fetcher, whose span says why.
      const d = byRun.get(dead)!;
      const fetcher = d.find((s) => s.name === "fetcher")!;
      expect(fetcher.parentSpanId).toBe(d.find((s) => s.name === "ingest")!.spanId);
      const deadEvent = fetcher.events?.find((e) => e.name === "dead-lettered");
      expect(String(deadEvent?.attributes?.find((a) => a.key === "exception.message")?.value.stringValue)).toMatch(/invalid payload for stage fetcher/);
      expect(d.some((s) => s.name === "classifier")).toBe(false);
      // In-process every span goes through the host's exporter (protobuf); with workerd the host sends JSON and the Worker protobuf.
      const fromWorker = receiver.spans.filter((s) => s.service === "edgepipe-stages");
      if (mode === "in-process") {
        expect(receiver.requests).toMatchObject({ json: 0, protobuf: expect.any(Number) });
        expect(fromWorker).toHaveLength(0);
      } else {
        expect(receiver.requests.json).toBeGreaterThan(0);
        expect(receiver.requests.protobuf).toBeGreaterThan(0);
        expect(new Set(fromWorker.map((s) => s.name))).toEqual(new Set(["tool enrich", "llm summary"]));
      }
      expect(receiver.requests.protobuf).toBeGreaterThan(0);
      console.log(`tracing (${mode}): ${receiver.spans.length} spans in ${JSON.stringify(receiver.requests)} OTLP requests, ${traces.size} traces`);
    } finally {
      await stack?.close();
      await receiver.close();
      await llm.close();
    }
  }, 300_000);
});

describe("tracing off", () => {
  it("mints no span id: no envelope of a run carries one, at any hop", async () => {
    const prefix = `of${randomHex(3)}`;
    const config = loadConfig({ VALKEY_URL: valkey.url, PORT: "0", HOST: "127.0.0.1", DEMO: "off", KEY_PREFIX: prefix, BLOCK_MS: "100" }, { appSettings: NewsSettings });
    const stack = await startRuntime({ config, pipeline, app, log: () => {} });
    try {
      const res = await fetch(`${stack.url}/v1/articles`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ articles: [1, 2, 3].map((i) => ({ title: `Untraced ${i} ${prefix}`, body: `Body ${i} of an untraced story.` })) }) });
      const { runIds } = (await res.json()) as { runIds: string[] };
      await eventually(async () => {
        for (const runId of runIds) if (((await (await fetch(`${stack.url}/v1/runs/${runId}`)).json()) as { status: string }).status === "running") return undefined;
        return true;
      }, { timeoutMs: 30_000, stepMs: 100 });
      const keys = createKeys({ prefix, partitions: config.PARTITIONS });
      let entries = 0;
      for (const stage of pipeline.stages.keys()) {
        for (let p = 0; p < (config.PARTITIONS); p++) {
          for (const [, fields] of (await valkey.conn.xrange(keys.stream(stage, p), "-", "+")) as Array<[string, string[]]>) {
            entries++;
            expect(fields.join(" ")).not.toMatch(/SpanId/);
          }
        }
      }
      expect(entries).toBe(3 * pipeline.stages.size);
    } finally {
      await stack.close();
    }
  }, 60_000);
});

describe("handler spans of the tool cache", () => {
  it("the classifier's LLM call: a 'tool llm-classify' miss holding an 'llm classify' span with the model and the tokens it used", async () => {
    const server: Server = createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ choices: [{ message: { content: "sports" } }], usage: { total_tokens: 42 } })));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const spans: SpanRecord[] = [];
      const traceId = randomHex(16);
      const hop = randomHex(8);
      const backend = { kind: "openai" as const, baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, model: "tiny-classifier" };
      const out = await classifyWithLlm(valkey.redis, testKeys(), backend, NewsSettings.parse({}), "Cup final tonight", "The match starts at eight.", traceScope(spans, traceId, hop));
      expect(out).toMatchObject({ topic: "sports", hit: false, tokens: 42 });
      const tool = spans.find((s) => s.name === "tool llm-classify")!;
      const llm = spans.find((s) => s.name === "llm classify")!;
      expect([tool.traceId, tool.parentSpanId, tool.attributes["edgepipe.tool.cache"]]).toEqual([traceId, hop, "miss"]);
      expect([llm.parentSpanId, llm.attributes["gen_ai.request.model"], llm.attributes["gen_ai.usage.total_tokens"]]).toEqual([tool.spanId, "tiny-classifier", 42]);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });


  it("a miss, and a hit after a lock wait, sent as OTLP JSON by the handlers' fetch exporter", async () => {
    const receiver = await startOtlpReceiver();
    try {
      const keys = testKeys();
      const spans: SpanRecord[] = [];
      const traceId = randomHex(16);
      const hop = randomHex(8);
      const trace = traceScope(spans, traceId, hop);
      let calls = 0;
      const call = () => cachedTool(valkey.redis, keys, { tool: "slow", args: { x: 1 }, ttlSeconds: 60, pollMs: 10, trace, fn: async () => (calls++, await new Promise((r) => setTimeout(r, 300)), { n: 1 }) });
      const [first, second] = await Promise.all([call(), new Promise((r) => setTimeout(r, 50)).then(call)]);
      expect([calls, first.hit, second.hit]).toEqual([1, false, true]);
      await fetchSpanSink({ OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json", OTEL_SERVICE_NAME: "edgepipe-test-tools" })!.export(spans);
      expect(receiver.requests).toEqual({ json: 1, protobuf: 0 });
      const tools = receiver.spans.filter((s) => s.name === "tool slow");
      expect(tools.map((s) => [s.traceId, s.parentSpanId, s.service])).toEqual([[traceId, hop, "edgepipe-test-tools"], [traceId, hop, "edgepipe-test-tools"]]);
      const miss = tools.find((s) => attr(s, "edgepipe.tool.cache") === "miss")!;
      const hit = tools.find((s) => attr(s, "edgepipe.tool.cache") === "hit")!;
      expect(Number(attr(hit, "edgepipe.tool.lock_wait_ms"))).toBeGreaterThanOrEqual(150);
      expect(attr(miss, "edgepipe.tool.lock_wait_ms")).toBeUndefined();
      const wait = receiver.spans.find((s) => s.name === "lock wait")!;
      expect(wait.parentSpanId).toBe(hit.spanId);
      expect(Number(BigInt(wait.endTimeUnixNano!) - BigInt(wait.startTimeUnixNano!)) / 1e6).toBeGreaterThanOrEqual(150);
    } finally {
      await receiver.close();
    }
  });
});
