/**
 * The benchmark's measuring parts, usable from bench/run.ts and from the smoke
 * test: a throwaway server, our pipeline on the real WorkerHost with a given
 * invoker, the BullMQ chain (baseline A), the naive client-side fan-out
 * (baseline B), and used_memory probes.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Queue, Worker, type ConnectionOptions } from "bullmq";
import { createApp } from "../functions/app";
import { randomHex, type StageItemResult, type Envelope } from "../functions/envelope";
import { createKeys, type Keys } from "../functions/keys";
import type { Pipeline } from "../functions/pipeline";
import type { AppEnv } from "../functions/redis";
import { settingsFor } from "../functions/config";
import { startRuns } from "../functions/runs";
import { WorkerHost, type WorkerTuning } from "../worker-host/host";
import { InProcessInvoker, type Invoker } from "../worker-host/invoker";
import { connectValkey, upstashOverValkey, type Connection } from "../worker-host/valkey";
import { launchValkey, type RunningValkey } from "../worker-host/valkey-launcher";
import { preciseNow } from "./pass-through-pipeline";

const benchDir = dirname(fileURLToPath(import.meta.url));

/**
 * The Node flags `npm start` runs the worker-host with (the options between
 * `node` and `--import` in package.json's start script): a bench process that
 * stands for the worker-host is started with the same ones.
 */
export function hostNodeFlags(): string[] {
  const scripts = (JSON.parse(readFileSync(join(benchDir, "..", "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;
  const m = /^node\s+(.*?)\s*--import\s+tsx\b/.exec(scripts.start ?? "");
  if (!m) throw new Error(`package.json's start script is not "node [flags] --import tsx ...": ${scripts.start}`);
  return m[1].split(/\s+/).filter(Boolean);
}
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface BenchServer {
  server: RunningValkey;
  url: string;
  stop(): Promise<void>;
}

/** Starts the bench's own server: free port, temp dir, AOF off (never 6379). */
export async function startBenchServer(): Promise<BenchServer> {
  const dir = mkdtempSync(join(tmpdir(), "edgepipe-bench-"));
  const server = await launchValkey({ dataDir: dir, appendOnly: false });
  return {
    server,
    url: server.url,
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Wraps an invoker and counts envelopes whose run ends at this call (no outputs, or a final failure). */
export class CountingInvoker implements Invoker {
  terminal = 0;
  handled = 0;
  constructor(private readonly inner: Invoker) {}
  async invoke(stage: string, envelopes: Envelope[]): Promise<StageItemResult[]> {
    const results = await this.inner.invoke(stage, envelopes);
    this.handled += results.length;
    for (const r of results) if (r.ok ? r.outputs.length === 0 : !r.error.retryable) this.terminal++;
    return results;
  }
  close(): Promise<void> {
    return this.inner.close?.() ?? Promise.resolve();
  }
}

export interface PipelineHarnessOptions {
  url: string;
  pipeline: Pipeline;
  /** Key prefix (random by default). */
  prefix?: string;
  /** Defaults to in-process dispatch through createApp({ pipeline }). */
  invoker?: (env: AppEnv) => Invoker;
  tuning?: WorkerTuning;
  /** Extra env for handlers (e.g. news settings). */
  env?: Record<string, unknown>;
}

/** Our runtime as a user runs it: a WorkerHost on the real server with the app dispatched in-process. */
export class PipelineHarness {
  readonly conn: Connection;
  /** A separate connection for the producer (like an ingest process). */
  readonly producer: Connection;
  readonly env: AppEnv;
  readonly keys: Keys;
  readonly host: WorkerHost;
  readonly invoker: CountingInvoker;
  readonly producerEnv: AppEnv;
  readonly pipeline: Pipeline;

  constructor(o: PipelineHarnessOptions) {
    this.pipeline = o.pipeline;
    const prefix = o.prefix ?? `b${randomHex(3)}`;
    this.conn = connectValkey(o.url, { name: "bench-host" });
    this.producer = connectValkey(o.url, { name: "bench-producer" });
    this.env = { ...o.env, REDIS: upstashOverValkey(this.conn), KEY_PREFIX: prefix };
    this.producerEnv = { ...o.env, REDIS: upstashOverValkey(this.producer), KEY_PREFIX: prefix };
    this.keys = settingsFor(this.env).keys;
    const inner = o.invoker ? o.invoker(this.env) : new InProcessInvoker(createApp({ pipeline: o.pipeline }), this.env);
    this.invoker = new CountingInvoker(inner);
    this.host = new WorkerHost({ pipeline: o.pipeline, keys: this.keys, conn: this.conn, invoker: this.invoker, tuning: o.tuning, log: (l) => process.stderr.write(`${l}\n`) });
  }

  async start(): Promise<void> {
    await this.host.run();
  }

  /** Starts runs for `payloads` (chunks of 500 per script call, like POST /v1/articles). */
  async enqueue(payloads: unknown[]): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < payloads.length; i += 500) {
      ids.push(...(await startRuns(this.producerEnv.REDIS!, payloads.slice(i, i + 500), { keys: this.keys, pipeline: this.pipeline })));
    }
    return ids;
  }

  /** Pending (read, not yet acked) entries summed over every stage stream. */
  async pending(): Promise<number> {
    let total = 0;
    for (const stage of this.pipeline.stages.keys()) {
      for (const p of this.keys.allPartitions) {
        const reply = (await this.producer.xpending(this.keys.stream(stage, p), this.keys.group(stage)).catch(() => [0])) as [number];
        total += Number(reply[0] ?? 0);
      }
    }
    return total;
  }

  /** Waits until `runs` runs have ended and every stage has acked what it read. */
  async waitForRuns(runs: number, { timeoutMs = 600_000, onTick }: { timeoutMs?: number; onTick?: (done: number) => void } = {}): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastTick = 0;
    while (this.invoker.terminal < runs) {
      if (Date.now() > deadline) throw new Error(`only ${this.invoker.terminal}/${runs} runs ended in ${timeoutMs} ms`);
      if (onTick && Date.now() - lastTick > 1000) {
        lastTick = Date.now();
        onTick(this.invoker.terminal);
      }
      await sleep(2);
    }
    while ((await this.pending()) > 0) {
      if (Date.now() > deadline) throw new Error("entries still pending at the deadline");
      await sleep(2);
    }
  }

  async close(): Promise<void> {
    await this.host.close();
    await this.invoker.close();
    await Promise.allSettled([this.conn.quit(), this.producer.quit()]);
  }
}

export interface ThroughputResult {
  articles: number;
  seconds: number;
  perSecond: number;
  peakRssMb?: number;
  /** CPU time per article: this Node process (host + producer) and the server. */
  cpuUsPerArticle?: { node: number; server: number };
}

/** Server CPU seconds so far (INFO cpu: user + sys of the main process). */
export async function serverCpuSeconds(conn: Connection): Promise<number> {
  const info = await conn.info("cpu");
  const field = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, "m").exec(info)?.[1] ?? 0);
  return field("used_cpu_user") + field("used_cpu_sys");
}

/** Starts a CPU meter; `stop(n)` returns microseconds of CPU per item for Node and the server. */
export async function cpuMeter(conn: Connection): Promise<{ stop(items: number): Promise<{ node: number; server: number }> }> {
  const node0 = process.cpuUsage();
  const server0 = await serverCpuSeconds(conn);
  return {
    async stop(items) {
      const n = process.cpuUsage(node0);
      const server = (await serverCpuSeconds(conn)) - server0;
      return { node: Math.round((n.user + n.system) / items), server: Math.round((server * 1e6) / items) };
    },
  };
}

/**
 * Pushes `payloads` through a running harness as fast as the producer can
 * enqueue, and times first enqueue -> last run ended and committed.
 */
export async function measureThroughput(h: PipelineHarness, payloads: unknown[], onTick?: (done: number, total: number) => void): Promise<ThroughputResult> {
  const meter = await cpuMeter(h.producer);
  const started = performance.now();
  const base = h.invoker.terminal;
  await h.enqueue(payloads);
  await h.waitForRuns(base + payloads.length, { onTick: (d) => onTick?.(d - base, payloads.length) });
  const seconds = (performance.now() - started) / 1000;
  const cpuUsPerArticle = await meter.stop(payloads.length);
  return { articles: payloads.length, seconds: round(seconds, 3), perSecond: Math.round(payloads.length / seconds), cpuUsPerArticle };
}

/**
 * Offers `rate` runs/s for `seconds` (open loop: a tick every ~1 ms enqueues
 * whatever is due, without waiting for earlier enqueues), stamping each
 * payload with its enqueue time. Returns the number of runs offered.
 */
export async function offerLoad(h: PipelineHarness, makePayload: (i: number) => Record<string, unknown>, rate: number, seconds: number): Promise<number> {
  const started = performance.now();
  let sent = 0;
  const inFlight = new Set<Promise<unknown>>();
  for (;;) {
    const elapsed = (performance.now() - started) / 1000;
    if (elapsed >= seconds) break;
    const due = Math.floor(rate * elapsed);
    if (due > sent) {
      const now = preciseNow();
      const batch: unknown[] = [];
      for (let i = sent; i < due; i++) batch.push({ ...makePayload(i), t: now, t0: now });
      sent = due;
      const p = startRuns(h.producerEnv.REDIS!, batch, { keys: h.keys, pipeline: h.pipeline });
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    }
    await sleep(1);
  }
  await Promise.all(inFlight);
  return sent;
}

export function round(v: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

// ---------------------------------------------------------------- BullMQ

/** One stage of the BullMQ chain: returns the next payload, or undefined to end the run. */
export type ChainStep = (payload: any) => Promise<unknown> | unknown;

export interface BullmqResult extends ThroughputResult {
  concurrency: number;
  completed: number;
}

/**
 * Baseline A: the same stages as chained BullMQ queues (each worker adds the
 * next job), same payloads, same server. Times first add -> last job completed.
 */
export async function runBullmqChain({
  url,
  steps,
  payloads,
  concurrency = 50,
  onTick,
}: {
  url: string;
  steps: ChainStep[];
  payloads: unknown[];
  concurrency?: number;
  onTick?: (done: number, total: number) => void;
}): Promise<BullmqResult> {
  const u = new URL(url);
  const connection: ConnectionOptions = { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null };
  const prefix = `bq${randomHex(3)}`;
  const queues = steps.map((_, i) => new Queue(`stage${i + 1}`, { connection, prefix }));
  const jobOpts = { removeOnComplete: true, removeOnFail: 1000 };
  let completed = 0;
  let failed = 0;
  let resolveDone: () => void = () => {};
  const done = new Promise<void>((r) => (resolveDone = r));
  const workers = steps.map(
    (step, i) =>
      new Worker(
        `stage${i + 1}`,
        async (job) => {
          const next = await step(job.data);
          if (next === undefined || i + 1 === steps.length) return "end";
          await queues[i + 1].add("a", next, jobOpts);
          return "next";
        },
        { connection, prefix, concurrency, autorun: false },
      ),
  );
  workers.forEach((w) => {
    w.on("completed", (job) => {
      // A run ends at the last stage, or earlier when a step returns undefined (e.g. a duplicate).
      if (job.returnvalue === "end") {
        completed++;
        if (completed + failed >= payloads.length) resolveDone();
      }
    });
    w.on("failed", () => {
      failed++;
      if (completed + failed >= payloads.length) resolveDone();
    });
  });
  await Promise.all(queues.map((q) => q.waitUntilReady()));
  for (const w of workers) void w.run();
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  const meterConn = connectValkey(url, { name: "bench-bq-meter" });
  const meter = await cpuMeter(meterConn);
  const started = performance.now();
  for (let i = 0; i < payloads.length; i += 500) {
    await queues[0].addBulk(payloads.slice(i, i + 500).map((data) => ({ name: "a", data, opts: jobOpts })));
  }
  const ticker = setInterval(() => onTick?.(completed, payloads.length), 1000);
  await done;
  clearInterval(ticker);
  const seconds = (performance.now() - started) / 1000;
  const cpuUsPerArticle = await meter.stop(payloads.length);
  await meterConn.quit();
  await Promise.allSettled(workers.map((w) => w.close()));
  await Promise.allSettled(queues.map((q) => q.obliterate({ force: true }).finally(() => q.close())));
  return { articles: payloads.length, completed, concurrency, seconds: round(seconds, 3), perSecond: Math.round(payloads.length / seconds), cpuUsPerArticle };
}

// ---------------------------------------------------------------- fan-out baseline

export interface FanOutResult {
  subscribers: number;
  deliveries: number;
  seconds: number;
  perSecond: number;
}

/** Adds `n` subscriber ids to a plain topic set (baseline B's subscriber list). */
export async function seedNaiveSubscribers(conn: Connection, prefix: string, topic: string, n: number): Promise<string[]> {
  const uids = Array.from({ length: n }, (_, i) => `u${i}`);
  for (let i = 0; i < n; i += 1000) await conn.sadd(`${prefix}:naive:subs:${topic}`, ...uids.slice(i, i + 1000));
  return uids;
}

/**
 * Baseline B, the naive client-side fan-out of the original Python demo: read
 * the topic's subscribers, then per subscriber SADD (dedupe) + EXPIRE, a
 * pipeline of LPUSH/LTRIM/XADD/XTRIM into the feed list and feed stream, then
 * LLEN. Sequential round trips per subscriber, as that demo did.
 */
export async function naiveFanOut(conn: Connection, { prefix, topic, articleId, feedCap = 500, ttlSeconds = 7 * 24 * 3600 }: { prefix: string; topic: string; articleId: string; feedCap?: number; ttlSeconds?: number }): Promise<FanOutResult> {
  const started = performance.now();
  const uids = await conn.smembers(`${prefix}:naive:subs:${topic}`);
  let deliveries = 0;
  for (const uid of uids) {
    const seen = `${prefix}:naive:seen:${uid}`;
    const added = await conn.sadd(seen, articleId);
    await conn.expire(seen, ttlSeconds);
    if (added === 0) continue;
    const feed = `${prefix}:naive:feed:${uid}`;
    const stream = `${prefix}:naive:feedstream:${uid}`;
    await conn.pipeline().lpush(feed, articleId).ltrim(feed, 0, feedCap - 1).xadd(stream, "*", "id", articleId).xtrim(stream, "MAXLEN", "~", feedCap).exec();
    await conn.llen(feed);
    deliveries++;
  }
  const seconds = (performance.now() - started) / 1000;
  return { subscribers: uids.length, deliveries, seconds: round(seconds, 4), perSecond: Math.round(deliveries / seconds) };
}

// ---------------------------------------------------------------- memory

/** Server `used_memory` in bytes. */
export async function usedMemory(conn: Connection): Promise<number> {
  const info = await conn.info("memory");
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? NaN);
}

/**
 * Bytes per stream entry and per pending (delivered, unacked) entry: XADD `n`
 * copies of `envelopeJson`, then read them all into one consumer without ack.
 */
export async function measureStreamMemory(conn: Connection, prefix: string, n: number, envelopeJson: string): Promise<{ entries: number; bytesPerEntry: number; bytesPerPendingRef: number; envelopeBytes: number }> {
  const stream = `${prefix}:mem:stream`;
  await conn.xgroup("CREATE", stream, "g", "0", "MKSTREAM");
  const before = await usedMemory(conn);
  for (let i = 0; i < n; i += 1000) {
    const pipe = conn.pipeline();
    for (let k = i; k < Math.min(n, i + 1000); k++) pipe.xadd(stream, "*", "e", envelopeJson);
    await pipe.exec();
  }
  const afterAdd = await usedMemory(conn);
  for (let read = 0; read < n; ) {
    const reply = (await conn.xreadgroup("GROUP", "g", "c", "COUNT", 1000, "STREAMS", stream, ">")) as Array<[string, unknown[]]> | null;
    if (!reply) break;
    read += reply[0][1].length;
  }
  const afterRead = await usedMemory(conn);
  await conn.del(stream);
  return {
    entries: n,
    envelopeBytes: Buffer.byteLength(envelopeJson),
    bytesPerEntry: round((afterAdd - before) / n, 1),
    bytesPerPendingRef: round((afterRead - afterAdd) / n, 1),
  };
}

// ---------------------------------------------------------------- worker-host in its own process

/** True when every stage's group has nothing pending and nothing undelivered. */
export async function pipelineIdle(conn: Connection, keys: Keys, pipeline: Pipeline): Promise<boolean> {
  for (const stage of pipeline.stages.keys()) {
    for (const p of keys.allPartitions) {
      const groups = (await conn.xinfo("GROUPS", keys.stream(stage, p)).catch(() => [])) as unknown[][];
      for (const g of groups) {
        const info: Record<string, unknown> = {};
        for (let i = 0; i < g.length; i += 2) info[String(g[i])] = g[i + 1];
        if (Number(info.pending) > 0 || Number(info.lag ?? 0) > 0) return false;
      }
    }
  }
  return true;
}

function rssOf(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Runs the worker-host alone in `processes` child processes (bench/host-process.ts;
 * several hosts share the consumer groups, the documented scale-out), pushes
 * `payloads` through, and samples each child's RSS (/proc, every 100 ms).
 * Peak and idle RSS are per process (the largest).
 */
export async function measureHostProcess({ url, pipeline, pipelineName, payloads, users = 0, processes = 1, onTick }: { url: string; pipeline: Pipeline; pipelineName: "pass-through" | "news"; payloads: unknown[]; users?: number; processes?: number; onTick?: (line: string) => void }): Promise<ThroughputResult & { processes: number; idleRssMb: number; peakRssMb: number; heapLimitMb: number }> {
  const prefix = `hp${randomHex(3)}`;
  const keys = createKeys({ prefix });
  const children = Array.from({ length: processes }, (_, i) =>
    spawn(process.execPath, [...hostNodeFlags(), "--import", "tsx", join(benchDir, "host-process.ts")], {
      // Only the first child seeds the demo users.
      env: { ...process.env, VALKEY_URL: url, KEY_PREFIX: prefix, BENCH_PIPELINE: pipelineName, BENCH_USERS: String(i === 0 ? users : 0) },
      stdio: ["ignore", "pipe", "inherit"],
    }),
  );
  const conn = connectValkey(url, { name: "bench-hp-producer" });
  let heapLimitMb = 0;
  const rssNow = () => Math.max(...children.map((c) => rssOf(c.pid!)));
  try {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolveReady, reject) => {
            child.stdout!.on("data", (d: Buffer) => {
              const ready = /ready heap-limit-mb=(\d+)/.exec(d.toString());
              if (ready) {
                heapLimitMb = Number(ready[1]);
                resolveReady();
              }
            });
            child.once("exit", (code) => reject(new Error(`host process exited (${code}) before it was ready`)));
          }),
      ),
    );
    await sleep(500);
    const idleRss = rssNow();
    let peak = idleRss;
    const sampler = setInterval(() => (peak = Math.max(peak, rssNow())), 100);
    const redis = upstashOverValkey(conn);
    const started = performance.now();
    for (let i = 0; i < payloads.length; i += 500) await startRuns(redis, payloads.slice(i, i + 500), { keys, pipeline });
    let last = 0;
    while (!(await pipelineIdle(conn, keys, pipeline))) {
      if (Date.now() - last > 1000) {
        last = Date.now();
        onTick?.(`host process${processes > 1 ? "es" : ""}: rss ${round(rssNow() / 2 ** 20)} MB`);
      }
      await sleep(5);
    }
    const seconds = (performance.now() - started) / 1000;
    clearInterval(sampler);
    peak = Math.max(peak, rssNow());
    return { articles: payloads.length, processes, seconds: round(seconds, 3), perSecond: Math.round(payloads.length / seconds), idleRssMb: round(idleRss / 2 ** 20), peakRssMb: round(peak / 2 ** 20), heapLimitMb };
  } finally {
    for (const child of children) child.kill("SIGTERM");
    await Promise.all(children.map((child) => new Promise((r) => (child.exitCode !== null ? r(null) : child.once("exit", r)))));
    await conn.quit();
  }
}
