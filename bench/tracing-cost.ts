/**
 * Bench row 11: what OpenTelemetry tracing costs per article. The news
 * pipeline (in-process, enrich through the tool cache so the handler adds a
 * span of its own, a few demo users) runs with tracing off and on, each twice,
 * alternating, on the bench's server. On, the host exports every span (hop,
 * queue wait, handler, commit, ingest, `tool enrich`) over OTLP/HTTP
 * (http/protobuf, the default) to a sink in its own process that reads and
 * drops the bodies. CPU per article is this process (host, handlers, producer,
 * exporter) plus the server, metered through the final flush of the exporter;
 * the two off runs' spread is the noise floor.
 * Standalone: `npx tsx bench/tracing-cost.ts [--quick]`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { pathToFileURL } from "node:url";
import { diag, DiagLogLevel } from "@opentelemetry/api";
import { app as newsApp, pipeline as newsPipeline } from "../functions/news/index";
import { seedDemoUsers } from "../functions/news/users";
import { InProcessInvoker } from "../worker-host/invoker";
import { startTracing } from "../worker-host/tracing";
import { loadArticles, type BenchArticle } from "./articles";
import { cpuMeter, measureThroughput, PipelineHarness, startBenchServer } from "./harness";

export interface TracingRun {
  perSecond: number;
  /** µs of CPU per article: this process, and the server. */
  cpuUsPerArticle: { node: number; server: number };
}

export interface TracingCostResult {
  articles: number;
  off: TracingRun;
  on: TracingRun & { exportRequests: number; exportBytesPerArticle: number; droppedSpans: number };
  /** (on - off) / off CPU per article, node + server. */
  extraCpu: number;
  /** |off1 - off2| / min: how far two identical runs differ. */
  offSpread: number;
}

/** An OTLP/HTTP sink in a child process: answers 200 to every POST and counts requests and bytes. */
async function startSink(): Promise<{ url: string; stats: () => Promise<{ requests: number; bytes: number }>; stop: () => void }> {
  const code = `
    const http = require("node:http");
    let requests = 0, bytes = 0;
    const server = http.createServer((req, res) => {
      if (req.url === "/stats") return res.end(JSON.stringify({ requests, bytes }));
      req.on("data", (c) => (bytes += c.length));
      req.on("end", () => { requests++; res.writeHead(200, { "content-type": "application/x-protobuf" }).end(); });
    });
    server.listen(0, "127.0.0.1", () => console.log(server.address().port));
  `;
  const child: ChildProcess = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("exit", (c) => reject(new Error(`sink exited ${c}`)));
    child.stdout!.once("data", (d) => resolve(Number(String(d).trim())));
  });
  const url = `http://127.0.0.1:${port}`;
  return { url, stats: async () => (await (await fetch(`${url}/stats`)).json()) as { requests: number; bytes: number }, stop: () => void child.kill() };
}

const articleInputs = (articles: BenchArticle[]) => articles.map(({ id, url, title, body, source, publishedAt }) => ({ id, url, title, body, source, publishedAt }));
const cpuOf = (r: TracingRun) => r.cpuUsPerArticle.node + r.cpuUsPerArticle.server;

/** One run of the news pipeline over `articles`, traced to `sinkUrl` or not. */
async function runOnce(url: string, articles: BenchArticle[], sinkUrl: string | undefined) {
  const tracing = sinkUrl ? startTracing({ endpoint: sinkUrl, serviceName: "edgepipe-bench" }) : undefined;
  // Fresh ids per run, so the fetcher's dedupe sees new articles every time.
  const tag = Math.random().toString(36).slice(2, 8);
  const inputs = articleInputs(articles).map((a, i) => ({ ...a, id: `${a.id ?? i}-${tag}`, url: a.url ? `${a.url}?r=${tag}` : undefined, title: `${a.title} ${tag}` }));
  const h = new PipelineHarness({
    url,
    pipeline: newsPipeline,
    invoker: (env) => new InProcessInvoker(newsApp, env),
    env: { ENRICH_CACHE: "on", ...(tracing ? { SPAN_SINK: tracing.spanSink } : {}) },
    ...(tracing ? { tuning: { tracer: tracing.tracer } } : {}),
  });
  await seedDemoUsers(h.env.REDIS!, h.keys, 20);
  await h.start();
  try {
    const meter = await cpuMeter(h.producer);
    const r = await measureThroughput(h, inputs);
    await tracing?.flush();
    const cpuUsPerArticle = await meter.stop(inputs.length);
    return { perSecond: r.perSecond, cpuUsPerArticle };
  } finally {
    await h.close();
    await tracing?.shutdown();
  }
}

/** Off and on, best of two runs each (the lower CPU per article), alternating. */
export async function measureTracingCost({ url, articles }: { url: string; articles: BenchArticle[] }): Promise<TracingCostResult> {
  const sink = await startSink();
  const dropped = { spans: 0 };
  // The batch processor reports spans it had to drop (a full queue) through diag.
  diag.setLogger({ error: () => {}, warn: (m: string) => void (dropped.spans += Number(/Dropped (\d+) spans/.exec(m)?.[1] ?? 0)), info: () => {}, debug: () => {}, verbose: () => {} }, DiagLogLevel.WARN);
  try {
    const offs: TracingRun[] = [];
    const ons: TracingRun[] = [];
    for (const variant of ["off", "on", "on", "off"] as const) {
      const r = await runOnce(url, articles, variant === "on" ? sink.url : undefined);
      (variant === "on" ? ons : offs).push(r);
    }
    const best = (rs: TracingRun[]) => rs.reduce((a, b) => (cpuOf(b) < cpuOf(a) ? b : a));
    const off = best(offs);
    const on = best(ons);
    const stats = await sink.stats();
    return {
      articles: articles.length,
      off,
      on: { ...on, exportRequests: Math.round(stats.requests / 2), exportBytesPerArticle: Math.round(stats.bytes / 2 / articles.length), droppedSpans: dropped.spans },
      extraCpu: Math.round((cpuOf(on) / cpuOf(off) - 1) * 1000) / 1000,
      offSpread: Math.round((Math.abs(cpuOf(offs[0]) - cpuOf(offs[1])) / Math.min(cpuOf(offs[0]), cpuOf(offs[1]))) * 1000) / 1000,
    };
  } finally {
    diag.disable();
    sink.stop();
  }
}

/** The table row of bench/run.ts. */
export function tracingCostRows(r: TracingCostResult | { notMeasured: string }): Array<{ row: string; ours: string; baseline: string; ratio: string; target: string; verdict: string }> {
  const row = "11 tracing, news pipeline in-process (CPU/article host+server)";
  if ("notMeasured" in r) return [{ row, ours: `not measured (${r.notMeasured})`, baseline: "-", ratio: "-", target: "off: no tracing work", verdict: "-" }];
  const fmt = (x: TracingRun) => `${x.perSecond.toLocaleString("en-US")} art/s, ${x.cpuUsPerArticle.node}+${x.cpuUsPerArticle.server} us/art`;
  return [
    {
      row,
      ours: `on (OTLP http/protobuf to a local sink, ${r.on.exportBytesPerArticle} B/art, ${r.on.droppedSpans} spans dropped): ${fmt(r.on)}`,
      baseline: `off: ${fmt(r.off)} (two off runs differ ${(r.offSpread * 100).toFixed(1)}%)`,
      ratio: `${(1 + r.extraCpu).toFixed(2)}x CPU (+${cpuOf(r.on) - cpuOf(r.off)} us/art)`,
      target: "off: no tracing work; on: measured",
      verdict: "-",
    },
  ];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  (async () => {
    const server = await startBenchServer();
    try {
      const quick = process.argv.includes("--quick");
      const { articles } = loadArticles(quick ? 1500 : 5000);
      const r = await measureTracingCost({ url: server.url, articles });
      console.log(JSON.stringify(r));
      for (const row of tracingCostRows(r)) console.log(`${row.row}: ${row.ours} | ${row.baseline} | ${row.ratio}`);
    } finally {
      await server.stop();
    }
  })().then(
    () => process.exit(0),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
