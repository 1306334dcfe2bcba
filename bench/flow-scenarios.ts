/**
 * Flow-control scenarios, measured on the real WorkerHost against a real
 * server: used reduced by tests/flow-control.test.ts and in full by
 * `npm run flow:fairness` (bench/flow.ts).
 *
 * fairness  one tenant floods N entries, then nine tenants send M each,
 *           through a stage limited to 2 concurrent entries per tenant: per
 *           tenant the p99 and last completion time (from the start of the
 *           enqueue to the end of the handler), the most entries of one
 *           tenant seen in handlers at once, attempts seen by handlers, and
 *           the stage's dead letters.
 */
import { z } from "zod";
import { createApp } from "../functions/app";
import type { Keys } from "../functions/keys";
import { definePipeline, defineStage, type Pipeline } from "../functions/pipeline";
import type { AppEnv } from "../functions/redis";
import { startRuns } from "../functions/runs";
import { readStats, type StageStats } from "../functions/stats";
import { WorkerHost, type WorkerTuning } from "../worker-host/host";
import { InProcessInvoker } from "../worker-host/invoker";
import { upstashOverValkey, type Connection } from "../worker-host/valkey";
import { quantiles } from "./stats";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface TenantFigures {
  tenant: string;
  entries: number;
  /** Completion times of the tenant's entries, ms since the enqueue started. */
  p50Ms: number;
  p99Ms: number;
  lastMs: number;
  /** Most of the tenant's entries in handlers at once. */
  maxInHandlers: number;
}

export interface FairnessResult {
  tenants: TenantFigures[];
  /** Attempts handlers saw other than 1 (a waiting entry that lost a delivery attempt shows here). */
  attemptsAbove1: number;
  /** Handler calls in all (more than the entries means some ran twice). */
  calls: number;
  stats: StageStats;
  totalMs: number;
}

/** The fairness scenario on hosts over `conns` (one WorkerHost per connection, all sharing the stage). */
export async function fairnessScenario({
  conns,
  keys,
  flood = 10_000,
  tenants = 9,
  each = 100,
  limit = 2,
  handlerMs = 20,
  tuning = {},
  timeoutMs = 600_000,
}: {
  conns: Connection[];
  keys: Keys;
  flood?: number;
  tenants?: number;
  each?: number;
  limit?: number;
  handlerMs?: number;
  tuning?: WorkerTuning;
  timeoutMs?: number;
}): Promise<FairnessResult> {
  const done = new Map<string, number[]>();
  const active = new Map<string, number>();
  const maxActive = new Map<string, number>();
  let attemptsAbove1 = 0;
  let calls = 0;
  let t0 = 0;
  const work = defineStage({
    name: "work",
    input: z.object({ tenant: z.string(), i: z.number().int() }),
    next: [],
    concurrency: { key: (p) => p.tenant, limit },
    handle: async ({ tenant }, ctx) => {
      calls++;
      if (ctx.attempt !== 1) attemptsAbove1++;
      const now = (active.get(tenant) ?? 0) + 1;
      active.set(tenant, now);
      maxActive.set(tenant, Math.max(maxActive.get(tenant) ?? 0, now));
      await sleep(handlerMs);
      active.set(tenant, (active.get(tenant) ?? 1) - 1);
      let list = done.get(tenant);
      if (!list) done.set(tenant, (list = []));
      list.push(performance.now() - t0);
      return { result: { tenant } };
    },
  });
  const pipeline: Pipeline = definePipeline({ name: "fairness", stages: [work] });
  const hosts = conns.map((conn, k) => {
    const app = createApp({ pipeline });
    const env: AppEnv = { REDIS: upstashOverValkey(conn), KEY_PREFIX: keys.prefix, PARTITIONS: String(keys.partitions) };
    return new WorkerHost({ pipeline, keys, conn, invoker: new InProcessInvoker(app, env), consumer: `fair-${k}`, env, tuning: { batchSize: 100, concurrency: 4, ...tuning }, log: (l) => process.stderr.write(`${l}\n`) });
  });
  await Promise.all(hosts.map((h) => h.run()));
  const redis = upstashOverValkey(conns[0]);
  t0 = performance.now();
  try {
    for (let s = 0; s < flood; s += 1000) {
      await startRuns(redis, Array.from({ length: Math.min(1000, flood - s) }, (_, i) => ({ tenant: "flood", i: s + i })), { keys, pipeline });
    }
    for (let t = 1; t <= tenants; t++) {
      await startRuns(redis, Array.from({ length: each }, (_, i) => ({ tenant: `t${t}`, i })), { keys, pipeline });
    }
    const total = flood + tenants * each;
    const deadline = Date.now() + timeoutMs;
    let stats: StageStats;
    for (;;) {
      stats = (await readStats(redis, keys, pipeline)).stages[0];
      if (stats.processed + stats.deadLettered >= total) break;
      if (Date.now() > deadline) throw new Error(`fairness scenario: ${stats.processed}/${total} processed after ${timeoutMs} ms`);
      await sleep(50);
    }
    const totalMs = performance.now() - t0;
    const figures: TenantFigures[] = [...done].map(([tenant, times]) => {
      const q = quantiles(times);
      return { tenant, entries: times.length, p50Ms: Math.round(q.p50 ?? 0), p99Ms: Math.round(q.p99 ?? 0), lastMs: Math.round(q.max ?? 0), maxInHandlers: maxActive.get(tenant) ?? 0 };
    });
    figures.sort((a, b) => (a.tenant === "flood" ? -1 : b.tenant === "flood" ? 1 : a.tenant.localeCompare(b.tenant, "en", { numeric: true })));
    return { tenants: figures, attemptsAbove1, calls, stats: stats!, totalMs };
  } finally {
    await Promise.all(hosts.map((h) => h.close()));
  }
}

export interface RateKeyFigures {
  key: string;
  /** Entries started (rate) or tokens reported (budget) per second over the window. */
  measured: number;
  limit: number;
  /** measured / limit - 1. */
  error: number;
  /** Entries started in the window on each host. */
  perHost: number[];
}

/**
 * Rate limit or token budget per key on several hosts at once: `keyCount`
 * keys with a backlog larger than the window can drain, a stage limited to
 * `perSecond` entries (rate) or `perSecond * 60 * cost` tokens a minute
 * (budget: each entry estimated at twice its reported cost, so the measured
 * rate is right only if the correction after the call works). Counts handler
 * starts per key in a window of `seconds` that begins `warmupS` after the
 * first start (past the burst). The burst is one second's worth: it bounds
 * what a window can exceed the limit by (1/seconds) and lets the readmit loop
 * lag by up to a second on a loaded machine without losing refill.
 */
export async function rateScenario({
  conns,
  keys,
  kind,
  perSecond = 20,
  seconds = 60,
  warmupS = 2,
  keyCount = 2,
  handlerMs = 5,
  tuning = {},
}: {
  conns: Connection[];
  keys: Keys;
  kind: "rate" | "budget";
  perSecond?: number;
  seconds?: number;
  warmupS?: number;
  keyCount?: number;
  handlerMs?: number;
  tuning?: WorkerTuning;
}): Promise<RateKeyFigures[]> {
  const cost = 50;
  const starts = new Map<string, Array<{ at: number; host: number }>>();
  let hostOf = new WeakMap<object, number>();
  const input = z.object({ key: z.string(), i: z.number().int() });
  const limits =
    kind === "rate"
      ? { rateLimit: { key: (p: { key: string }) => p.key, perSecond, burst: perSecond } }
      : { budget: { key: (p: { key: string }) => p.key, tokensPerMinute: perSecond * 60 * cost, burst: perSecond * cost, estimate: () => 2 * cost } };
  const stage = defineStage({
    name: "limited",
    input,
    next: [],
    ...limits,
    handle: async ({ key }, ctx) => {
      let list = starts.get(key);
      if (!list) starts.set(key, (list = []));
      list.push({ at: Date.now(), host: hostOf.get(ctx.env.REDIS as object) ?? -1 });
      await sleep(handlerMs);
      ctx.reportCost(cost);
      return { result: {} };
    },
  });
  const pipeline = definePipeline({ name: `rate-${kind}`, stages: [stage] });
  hostOf = new WeakMap();
  const hosts = conns.map((conn, k) => {
    const app = createApp({ pipeline });
    const env: AppEnv = { REDIS: upstashOverValkey(conn), KEY_PREFIX: keys.prefix, PARTITIONS: String(keys.partitions) };
    const invoker = new InProcessInvoker(app, env);
    // The in-process invoker hands handlers a copy of env: mark that copy's host by its REDIS client.
    hostOf.set(env.REDIS as object, k);
    return new WorkerHost({ pipeline, keys, conn, invoker, consumer: `rate-${k}`, env, tuning: { batchSize: 50, concurrency: 4, ...tuning }, log: (l) => process.stderr.write(`${l}\n`) });
  });
  const redis = upstashOverValkey(conns[0]);
  const backlog = Math.ceil(perSecond * (seconds + warmupS + 5) * 1.2);
  for (let k = 0; k < keyCount; k++) {
    for (let s = 0; s < backlog; s += 1000) {
      await startRuns(redis, Array.from({ length: Math.min(1000, backlog - s) }, (_, i) => ({ key: `k${k}`, i: s + i })), { keys, pipeline });
    }
  }
  await Promise.all(hosts.map((h) => h.run()));
  try {
    const deadline = Date.now() + (seconds + warmupS + 30) * 1000;
    let first: number | undefined;
    for (;;) {
      const all = [...starts.values()].flat();
      if (all.length > 0) first ??= Math.min(...all.map((s) => s.at));
      if (first !== undefined && Date.now() > first + (warmupS + seconds) * 1000 + 500) break;
      if (Date.now() > deadline) throw new Error("rate scenario: the window never filled");
      await sleep(100);
    }
    const from = first! + warmupS * 1000;
    const to = from + seconds * 1000;
    return [...starts].map(([key, list]) => {
      const inWindow = list.filter((s) => s.at >= from && s.at < to);
      const measured = ((kind === "rate" ? 1 : cost) * inWindow.length) / seconds;
      const limit = kind === "rate" ? perSecond : perSecond * cost;
      const perHost = conns.map((_, k) => inWindow.filter((s) => s.host === k).length);
      return { key, measured: Math.round(measured * 100) / 100, limit, error: Math.round((measured / limit - 1) * 10_000) / 10_000, perHost };
    }).sort((a, b) => a.key.localeCompare(b.key));
  } finally {
    await Promise.all(hosts.map((h) => h.close()));
  }
}

export interface PrioritiesResult {
  low: number;
  high: number;
  /** When the last high run finished and when the last low one did, ms since the high runs were sent. */
  lastHighMs: number;
  lastLowMs: number;
  /** Completions while high runs waited (from sending them to the last one done). */
  duringHigh: { high: number; low: number };
  /** low / high completions while both waited; the stated ratio is weights.low / weights.high. */
  ratio: number;
  statedRatio: number;
}

/**
 * Priority lanes: a stage with `lanes: { limit }` gets a full backlog of
 * `low` low-priority runs; once they flow, `high` high-priority runs are sent.
 * Counts completions per lane while the high runs wait.
 */
export async function prioritiesScenario({
  conns,
  keys,
  low = 2000,
  high = 200,
  limit = 4,
  handlerMs = 20,
  tuning = {},
  timeoutMs = 600_000,
}: {
  conns: Connection[];
  keys: Keys;
  low?: number;
  high?: number;
  limit?: number;
  handlerMs?: number;
  tuning?: WorkerTuning;
  timeoutMs?: number;
}): Promise<PrioritiesResult> {
  const weights = { high: 8, normal: 2, low: 1 };
  const done: Array<{ lane: string; at: number }> = [];
  const work = defineStage({
    name: "work",
    input: z.object({ lane: z.string(), i: z.number().int() }),
    next: [],
    lanes: { limit, weights },
    handle: async ({ lane }) => {
      await sleep(handlerMs);
      done.push({ lane, at: performance.now() });
      return { result: {} };
    },
  });
  const pipeline = definePipeline({ name: "priorities", stages: [work] });
  const hosts = conns.map((conn, k) => {
    const app = createApp({ pipeline });
    const env: AppEnv = { REDIS: upstashOverValkey(conn), KEY_PREFIX: keys.prefix, PARTITIONS: String(keys.partitions) };
    return new WorkerHost({ pipeline, keys, conn, invoker: new InProcessInvoker(app, env), consumer: `prio-${k}`, env, tuning: { batchSize: 100, concurrency: 4, ...tuning }, log: (l) => process.stderr.write(`${l}\n`) });
  });
  const redis = upstashOverValkey(conns[0]);
  for (let s = 0; s < low; s += 1000) {
    await startRuns(redis, Array.from({ length: Math.min(1000, low - s) }, (_, i) => ({ lane: "low", i: s + i })), { keys, pipeline, priority: "low" });
  }
  await Promise.all(hosts.map((h) => h.run()));
  try {
    const deadline = Date.now() + timeoutMs;
    // The low backlog is flowing (and parked behind the lane limit) before the high runs arrive.
    while (done.length < Math.min(low, 5 * limit)) {
      if (Date.now() > deadline) throw new Error("priorities scenario: the low runs never started");
      await sleep(20);
    }
    const t0 = performance.now();
    await startRuns(redis, Array.from({ length: high }, (_, i) => ({ lane: "high", i })), { keys, pipeline, priority: "high" });
    while (done.length < low + high) {
      if (Date.now() > deadline) throw new Error(`priorities scenario: ${done.length}/${low + high} done after ${timeoutMs} ms`);
      await sleep(20);
    }
    const highs = done.filter((d) => d.lane === "high");
    const lastHigh = Math.max(...highs.map((d) => d.at));
    const during = done.filter((d) => d.at >= t0 && d.at <= lastHigh);
    const duringHigh = { high: during.filter((d) => d.lane === "high").length, low: during.filter((d) => d.lane === "low").length };
    return {
      low,
      high,
      lastHighMs: Math.round(lastHigh - t0),
      lastLowMs: Math.round(Math.max(...done.filter((d) => d.lane === "low").map((d) => d.at)) - t0),
      duringHigh,
      ratio: Math.round((duringHigh.low / Math.max(1, duringHigh.high)) * 1000) / 1000,
      statedRatio: Math.round((weights.low / weights.high) * 1000) / 1000,
    };
  } finally {
    await Promise.all(hosts.map((h) => h.close()));
  }
}
