/**
 * Row 4, hop latency at a fixed offered load, measured in a fresh process
 * (bench/latency-process.ts) that holds only the worker-host, its in-process
 * handlers and the producer: the bench's own heap (20,000 articles, BullMQ)
 * would otherwise lengthen every GC pause and show up in the tail.
 */
import { loadavg } from "node:os";
import { PerformanceObserver, monitorEventLoopDelay, type IntervalHistogram } from "node:perf_hooks";
import type { BenchArticle } from "./articles";
import { PipelineHarness, cpuMeter, offerLoad } from "./harness";
import { PASS_STAGES, hopRecorder, passThroughPipeline } from "./pass-through-pipeline";
import { quantiles, type Quantiles } from "./stats";

export interface LatencyPoint {
  rate: number;
  seconds: number;
  offered: number;
  measured: number;
  hops: Record<string, Quantiles>;
  endToEnd: Quantiles;
  /** Worst p99 across the hops. */
  hopP99: number | null;
  /** Why a tail is long: event-loop delay of the process, GC pauses, machine load. */
  eventLoopDelayMs: { p50: number; p99: number; max: number };
  gcPausesMs: Quantiles;
  loadAvg1m: number;
  /** CPU per article in the measured window: this process (host + handlers + producer) and the server. */
  cpuUsPerArticle?: { node: number; server: number };
}

/** Builds a LatencyPoint from the samples of one measured window (hop latencies per stage, ms). */
export function summarizeLatency(o: {
  rate: number;
  seconds: number;
  offered: number;
  measured: number;
  hops: Map<string, number[]>;
  endToEnd: number[];
  eld: IntervalHistogram;
  gcPauses: number[];
  cpuUsPerArticle?: { node: number; server: number };
}): LatencyPoint {
  const ms = (ns: number) => Math.round(ns / 1e3) / 1e3;
  const hops: Record<string, Quantiles> = {};
  for (const stage of PASS_STAGES) hops[stage] = quantiles(o.hops.get(stage) ?? []);
  const p99s = Object.values(hops).map((q) => q.p99).filter((v): v is number => v !== null);
  return {
    rate: o.rate,
    seconds: o.seconds,
    offered: o.offered,
    measured: o.measured,
    hops,
    endToEnd: quantiles(o.endToEnd),
    hopP99: p99s.length ? Math.max(...p99s) : null,
    eventLoopDelayMs: { p50: ms(o.eld.percentile(50)), p99: ms(o.eld.percentile(99)), max: ms(o.eld.max) },
    gcPausesMs: quantiles(o.gcPauses),
    loadAvg1m: Math.round(loadavg()[0] * 100) / 100,
    cpuUsPerArticle: o.cpuUsPerArticle,
  };
}

/** Offers `rate` articles/s for warm-up + `seconds` and returns the hop latencies of the measured window. */
export async function measureLatencyPoint({ url, rate, seconds, warmupSeconds, articles }: { url: string; rate: number; seconds: number; warmupSeconds: number; articles: BenchArticle[] }): Promise<LatencyPoint> {
  const h = new PipelineHarness({ url, pipeline: passThroughPipeline() });
  await h.start();
  try {
    hopRecorder.reset();
    hopRecorder.enabled = false;
    const eld = monitorEventLoopDelay({ resolution: 1 });
    const gcPauses: number[] = [];
    const gcObserver = new PerformanceObserver((list) => {
      if (hopRecorder.enabled) for (const e of list.getEntries()) gcPauses.push(e.duration);
    });
    gcObserver.observe({ entryTypes: ["gc"] });
    let meter: Awaited<ReturnType<typeof cpuMeter>> | undefined;
    const warm = setTimeout(() => {
      hopRecorder.enabled = true;
      eld.enable();
      void cpuMeter(h.producer).then((m) => (meter = m));
    }, warmupSeconds * 1000);
    const offered = await offerLoad(h, (i) => articles[i % articles.length] as unknown as Record<string, unknown>, rate, seconds + warmupSeconds);
    clearTimeout(warm);
    await h.waitForRuns(offered);
    hopRecorder.enabled = false;
    const measured = hopRecorder.endToEnd.length;
    const cpuUsPerArticle = meter && measured > 0 ? await meter.stop(measured) : undefined;
    eld.disable();
    gcObserver.disconnect();
    return summarizeLatency({ rate, seconds, offered, measured, hops: hopRecorder.hops, endToEnd: hopRecorder.endToEnd, eld, gcPauses, cpuUsPerArticle });
  } finally {
    await h.close();
  }
}
