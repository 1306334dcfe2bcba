/**
 * Pipeline figures read from Valkey: counters and latency buckets that the
 * commit scripts keep per stage and partition (so they survive restarts and
 * add up across hosts), plus live backlog from the streams.
 * Served as JSON at /v1/stats and as Prometheus text at /metrics.
 */
import type { Keys } from "./keys";
import type { Pipeline } from "./pipeline";
import { evalScript, type RedisClient } from "./redis";
import { nextTicks } from "./schedules";

/** Upper bounds (ms) of the handler latency histogram buckets; the last bucket is +Inf. */
export const LATENCY_BUCKETS_MS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000] as const;

/** Stats-hash field of the bucket a latency falls in. */
export function latencyField(ms: number): string {
  for (const b of LATENCY_BUCKETS_MS) if (ms <= b) return `lat_le_${b}`;
  return "lat_le_inf";
}

export interface StageStats {
  name: string;
  ingested: number;
  processed: number;
  failed: number;
  retried: number;
  deadLettered: number;
  /** Redelivered envelopes whose step was already committed: acked without running the handler again. */
  redeliveredAfterCommit: number;
  /** @deprecated The same count as `redeliveredAfterCommit` (the old, misleading name: it counts redeliveries, not duplicate payloads); kept until the next major version. */
  duplicates: number;
  /** Ingest calls refused by backpressure (each answered 429), and the runs they carried. */
  throttled: number;
  throttledRuns: number;
  pending: number;
  lag: number;
  streamLength: number;
  latencyMs: { p50: number | null; p99: number | null; count: number; sum: number };
  /**
   * Flow control (a stage's concurrency, rateLimit and budget): `throttled`
   * entries held back by a limit so far, `waiting` entries in the per-key
   * lists now (not to be confused with `durable.parked`: runs waiting for an
   * event), `readmitted` entries put back on the stream so far. All zero for
   * a stage without limits.
   */
  flow: { throttled: number; waiting: number; readmitted: number };
  /** Non-cumulative counts per bucket bound ("inf" last), for Prometheus. */
  buckets: Array<{ le: number | "inf"; count: number }>;
}

/** Runs waiting on time or events, and the pipeline's schedules. */
export interface DurableStats {
  /** Delayed runs not yet due or not yet moved to their stream. */
  delayed: number;
  /** Runs parked until an event arrives (or their wait times out). */
  parked: number;
  /** Each schedule of the pipeline with its next tick (ISO, UTC). */
  schedules: Array<{ name: string; cron: string; next: string | null }>;
}

export interface PipelineStats {
  stages: StageStats[];
  durable: DurableStats;
  fanout: { deliveries: number };
  toolCache: { hits: number; misses: number };
}

/** Quantile from histogram buckets, interpolated linearly inside the bucket. */
export function quantileFromBuckets(buckets: Array<{ le: number | "inf"; count: number }>, q: number): number | null {
  const total = buckets.reduce((s, b) => s + b.count, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  let lower = 0;
  for (const b of buckets) {
    if (b.count > 0 && seen + b.count >= rank) {
      if (b.le === "inf") return lower;
      return Math.round((lower + ((rank - seen) / b.count) * (b.le - lower)) * 1000) / 1000;
    }
    seen += b.count;
    if (b.le !== "inf") lower = b.le;
  }
  return lower;
}

function num(v: unknown): number {
  const n = Number(v ?? 0);
  return Number.isFinite(n) ? n : 0;
}

/** Reads every stage's figures, summed over partitions. */
export async function readStats(redis: RedisClient, keys: Keys, pipeline: Pipeline): Promise<PipelineStats> {
  const stages = await Promise.all(
    [...pipeline.stages.keys()].map(async (name) => {
      const perPartition = await Promise.all(
        keys.allPartitions.map(async (p) => {
          const [hash, backlog] = await Promise.all([
            redis.hgetall<Record<string, unknown>>(keys.stageStats(name, p)),
            evalScript<[number, number, number]>(redis, "streamBacklog", [keys.stream(name, p)], [keys.group(name)]),
          ]);
          return { hash: hash ?? {}, backlog };
        }),
      );
      const sum = (field: string) => perPartition.reduce((s, x) => s + num(x.hash[field]), 0);
      const buckets = [...LATENCY_BUCKETS_MS.map((le) => ({ le: le as number | "inf", count: sum(`lat_le_${le}`) })), { le: "inf" as const, count: sum("lat_le_inf") }];
      const count = buckets.reduce((s, b) => s + b.count, 0);
      const stats: StageStats = {
        name,
        ingested: sum("ingested"),
        processed: sum("processed"),
        failed: sum("failed"),
        retried: sum("retried"),
        deadLettered: sum("deadLettered"),
        // The scripts' hash field keeps its old name, so counts stored before the rename still add up.
        redeliveredAfterCommit: sum("duplicates"),
        duplicates: sum("duplicates"),
        throttled: sum("throttled"),
        throttledRuns: sum("throttled_runs"),
        pending: perPartition.reduce((s, x) => s + num(x.backlog?.[1]), 0),
        lag: perPartition.reduce((s, x) => s + Math.max(0, num(x.backlog?.[2])), 0),
        streamLength: perPartition.reduce((s, x) => s + num(x.backlog?.[0]), 0),
        latencyMs: {
          p50: quantileFromBuckets(buckets, 0.5),
          p99: quantileFromBuckets(buckets, 0.99),
          count,
          sum: sum("lat_sum_us") / 1000,
        },
        // flow_parked: the same count under its name before the rename (entries parked then and readmitted now cancel out in the sum).
        flow: { throttled: sum("flow_throttled"), waiting: sum("flow_waiting") + sum("flow_parked"), readmitted: sum("flow_readmitted") },
        buckets,
      };
      return stats;
    }),
  );
  const [counters, deliveries, delayed, parked] = await Promise.all([
    redis.hgetall<Record<string, unknown>>(keys.counters()),
    readFanoutDeliveries(redis, keys),
    Promise.all(keys.allPartitions.map((p) => redis.zcard(keys.delayed(p)))),
    Promise.all(keys.allPartitions.map((p) => redis.zcard(keys.parked(p)))),
  ]);
  const total = (counts: number[]) => counts.reduce((a, b) => a + num(b), 0);
  return {
    stages,
    durable: { delayed: total(delayed), parked: total(parked), schedules: nextTicks(pipeline) },
    fanout: { deliveries },
    toolCache: { hits: num(counters?.tool_cache_hits), misses: num(counters?.tool_cache_misses) },
  };
}

/**
 * Feed deliveries so far: the per-bucket counters the fan-out script writes,
 * plus the global counter that held them before (data of older versions).
 */
export async function readFanoutDeliveries(redis: RedisClient, keys: Keys): Promise<number> {
  const counts = await Promise.all([redis.hget(keys.counters(), "fanout_deliveries"), ...keys.allBuckets.map((b) => redis.hget(keys.fanoutStats(b), "fanout_deliveries"))]);
  return counts.reduce<number>((sum, c) => sum + num(c), 0);
}

/** Renders stats as Prometheus text exposition format. */
export function renderPrometheus(stats: PipelineStats): string {
  const lines: string[] = [];
  const counter = (name: string, help: string, type: "counter" | "gauge", pick: (s: StageStats) => number) => {
    lines.push(`# HELP edgepipe_${name} ${help}`, `# TYPE edgepipe_${name} ${type}`);
    for (const s of stats.stages) lines.push(`edgepipe_${name}{stage="${s.name}"} ${pick(s)}`);
  };
  counter("stage_processed_total", "Envelopes committed by the stage.", "counter", (s) => s.processed);
  counter("stage_failed_total", "Handler failures (retryable or not).", "counter", (s) => s.failed);
  counter("stage_retried_total", "Envelopes scheduled for redelivery.", "counter", (s) => s.retried);
  counter("stage_dead_lettered_total", "Envelopes moved to the dead-letter stream.", "counter", (s) => s.deadLettered);
  counter("stage_redelivered_after_commit_total", "Redelivered envelopes whose step was already committed (acked, handler not run again).", "counter", (s) => s.redeliveredAfterCommit);
  counter("stage_duplicates_total", "Deprecated: the same count as edgepipe_stage_redelivered_after_commit_total.", "counter", (s) => s.duplicates);
  counter("stage_ingested_total", "Runs started at this stage.", "counter", (s) => s.ingested);
  counter("stage_throttled_total", "Ingest calls refused by backpressure (answered 429 with Retry-After).", "counter", (s) => s.throttled);
  counter("stage_throttled_runs_total", "Runs in ingest calls refused by backpressure.", "counter", (s) => s.throttledRuns);
  counter("stage_pending", "Entries delivered but not yet acknowledged.", "gauge", (s) => s.pending);
  counter("stage_flow_throttled_total", "Entries held back by a flow limit (parked until their key had room).", "counter", (s) => s.flow.throttled);
  counter("stage_flow_waiting", "Entries waiting in flow-control lists now.", "gauge", (s) => s.flow.waiting);
  counter("stage_flow_readmitted_total", "Parked entries put back on the stream.", "counter", (s) => s.flow.readmitted);
  counter("stage_lag", "Entries not yet delivered to the stage's group.", "gauge", (s) => s.lag);
  counter("stage_stream_length", "Length of the stage's input stream(s).", "gauge", (s) => s.streamLength);
  lines.push("# HELP edgepipe_handler_latency_seconds Handler time per envelope.", "# TYPE edgepipe_handler_latency_seconds histogram");
  for (const s of stats.stages) {
    let cumulative = 0;
    for (const b of s.buckets) {
      cumulative += b.count;
      const le = b.le === "inf" ? "+Inf" : String(b.le / 1000);
      lines.push(`edgepipe_handler_latency_seconds_bucket{stage="${s.name}",le="${le}"} ${cumulative}`);
    }
    lines.push(`edgepipe_handler_latency_seconds_sum{stage="${s.name}"} ${s.latencyMs.sum / 1000}`);
    lines.push(`edgepipe_handler_latency_seconds_count{stage="${s.name}"} ${s.latencyMs.count}`);
  }
  lines.push("# HELP edgepipe_runs_delayed Delayed runs waiting for their time.", "# TYPE edgepipe_runs_delayed gauge", `edgepipe_runs_delayed ${stats.durable.delayed}`);
  lines.push("# HELP edgepipe_runs_parked Runs parked until an event (or their timeout).", "# TYPE edgepipe_runs_parked gauge", `edgepipe_runs_parked ${stats.durable.parked}`);
  lines.push("# HELP edgepipe_schedules Cron schedules of the pipeline.", "# TYPE edgepipe_schedules gauge", `edgepipe_schedules ${stats.durable.schedules.length}`);
  lines.push("# HELP edgepipe_fanout_deliveries_total Feed deliveries written by fan-out.", "# TYPE edgepipe_fanout_deliveries_total counter", `edgepipe_fanout_deliveries_total ${stats.fanout.deliveries}`);
  lines.push("# HELP edgepipe_tool_cache_hits_total Tool cache hits.", "# TYPE edgepipe_tool_cache_hits_total counter", `edgepipe_tool_cache_hits_total ${stats.toolCache.hits}`);
  lines.push("# HELP edgepipe_tool_cache_misses_total Tool cache misses.", "# TYPE edgepipe_tool_cache_misses_total counter", `edgepipe_tool_cache_misses_total ${stats.toolCache.misses}`);
  return lines.join("\n") + "\n";
}
