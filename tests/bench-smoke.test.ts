/**
 * The benchmark harness on a tiny size: every article goes through the five
 * pass-through stages exactly once, the BullMQ chain completes every job, the
 * naive fan-out delivers to every subscriber once, and the memory probe
 * counts what it wrote. Behaviour only; nothing here is timed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomHex } from "../functions/envelope";
import { loadArticles, parseCsv } from "../bench/articles";
import { PipelineHarness, hostNodeFlags, measureHostProcess, measureStreamMemory, measureThroughput, naiveFanOut, runBullmqChain, seedNaiveSubscribers } from "../bench/harness";
import { HopRecorder, PASS_STAGES, passThroughPipeline } from "../bench/pass-through-pipeline";
import { measureFloor } from "../bench/floor";
import { measureTracingCost } from "../bench/tracing-cost";
import { measureRawRelayPoint } from "../bench/raw-relay";
import { quantiles } from "../bench/stats";
import { renderChart } from "../bench/svg";
import { startTestValkey, type TestValkey } from "./helpers/valkey";

let v: TestValkey;
beforeAll(async () => {
  v = await startTestValkey();
});
afterAll(async () => {
  await v?.stop();
});

describe("bench harness", () => {
  it("moves 200 articles through the 5 pass-through stages exactly once", async () => {
    const recorder = new HopRecorder();
    recorder.enabled = true;
    const pipeline = passThroughPipeline(recorder);
    const h = new PipelineHarness({ url: v.url, pipeline });
    await h.start();
    try {
      const { articles } = loadArticles(200);
      const payloads = articles.map((a) => ({ ...a, t: Date.now(), t0: Date.now() }));
      const result = await measureThroughput(h, payloads);
      expect(result.articles).toBe(200);
      expect(h.invoker.terminal).toBe(200);
      expect(h.invoker.handled).toBe(200 * PASS_STAGES.length);
      expect(await h.pending()).toBe(0);
      // Each stage committed each run once, with no duplicate and nothing dead-lettered.
      for (const stage of PASS_STAGES) {
        const stats = await v.conn.hgetall(h.keys.stageStats(stage, 0));
        expect(Number(stats.processed)).toBe(200);
        expect(Number(stats.duplicates ?? 0)).toBe(0);
        expect(await v.conn.xlen(h.keys.deadLetters(stage, 0))).toBe(0);
        expect(recorder.hops.get(stage)?.length).toBe(200);
      }
      expect(recorder.endToEnd.length).toBe(200);
      const stream = await v.conn.xrange(h.keys.stream("pass5", 0), "-", "+");
      const runIds = stream.map(([, fields]) => (JSON.parse(fields[1]) as { runId: string }).runId);
      expect(new Set(runIds).size).toBe(200);
      for (const runId of runIds.slice(0, 20)) {
        expect(await v.conn.hget(h.keys.run(runId), "status")).toBe("completed");
      }
    } finally {
      await h.close();
    }
  });

  it("runs the BullMQ chain to completion for every job", async () => {
    const seen: number[] = [];
    const payloads = Array.from({ length: 60 }, (_, i) => ({ i }));
    const steps = [1, 2, 3].map((k) => (p: { i: number }) => {
      if (k === 3) seen.push(p.i);
      return p;
    });
    const result = await runBullmqChain({ url: v.url, steps, payloads, concurrency: 5 });
    expect(result.completed).toBe(60);
    expect(seen.sort((a, b) => a - b)).toEqual(payloads.map((p) => p.i));
  });

  it("naive fan-out delivers to each of 100 subscribers once, and not again on a repeat", async () => {
    const prefix = `nv${randomHex(3)}`;
    await seedNaiveSubscribers(v.conn, prefix, "sports", 100);
    const first = await naiveFanOut(v.conn, { prefix, topic: "sports", articleId: "a1" });
    expect(first.subscribers).toBe(100);
    expect(first.deliveries).toBe(100);
    expect(await v.conn.lrange(`${prefix}:naive:feed:u7`, 0, -1)).toEqual(["a1"]);
    const again = await naiveFanOut(v.conn, { prefix, topic: "sports", articleId: "a1" });
    expect(again.deliveries).toBe(0);
    expect(await v.conn.llen(`${prefix}:naive:feed:u7`)).toBe(1);
  });

  it("measures stream memory for the entries it wrote and cleans up", async () => {
    const prefix = `mem${randomHex(3)}`;
    const m = await measureStreamMemory(v.conn, prefix, 300, JSON.stringify({ x: "y".repeat(200) }));
    expect(m.entries).toBe(300);
    expect(m.bytesPerEntry).toBeGreaterThan(0);
    expect(await v.conn.exists(`${prefix}:mem:stream`)).toBe(0);
  });

  it("relays every offered article through the five raw relays (baseline C) and records its hops", async () => {
    const { articles } = loadArticles(50);
    const point = await measureRawRelayPoint({ url: v.url, articles, rate: 200, seconds: 0.5, warmupSeconds: 0 });
    expect(point.offered).toBeGreaterThan(50);
    // Every article offered reached the fifth relay once, and each hop was recorded.
    expect(point.measured).toBe(point.offered);
    for (const q of Object.values(point.hops)) expect(q.count).toBe(point.offered);
  });

  it("measures the floor (event-loop delay, PING round trips, blocked-read wake-ups) and leaves no key behind", async () => {
    const before = await v.conn.dbsize();
    const floor = await measureFloor(v.url, 0.3);
    // Counts depend on the machine's speed (a loaded one manages few in 0.3 s): only that it measured.
    expect(floor.pingRttMs.count).toBeGreaterThan(0);
    expect(floor.wakeUpMs.count).toBeGreaterThan(0);
    expect(floor.pingRttMs.p50).toBeGreaterThan(0);
    expect(floor.idleEventLoopDelayMs.p50).toBeGreaterThan(0);
    expect(await v.conn.dbsize()).toBe(before);
  });

  it("runs the worker-host process with npm start's Node flags and moves every article through it", async () => {
    expect(hostNodeFlags()).toEqual(["--max-old-space-size=512"]);
    const { articles } = loadArticles(100);
    const r = await measureHostProcess({ url: v.url, pipeline: passThroughPipeline(), pipelineName: "pass-through", payloads: articles.map((a) => ({ ...a, t: 0, t0: 0 })) });
    expect(r.articles).toBe(100);
    expect(r.peakRssMb).toBeGreaterThan(0);
    // The V8 heap limit follows the flag (old space 512 MB plus the young generation), not the machine's default.
    expect(r.heapLimitMb).toBeGreaterThanOrEqual(512);
    expect(r.heapLimitMb).toBeLessThan(640);
  });

  it("row 11 runs the news pipeline untraced and traced, and the traced runs export their spans to its sink, none dropped", async () => {
    const r = await measureTracingCost({ url: v.url, articles: loadArticles(40).articles });
    expect(r.articles).toBe(40);
    expect(r.off.cpuUsPerArticle.node).toBeGreaterThan(0);
    expect(r.on.cpuUsPerArticle.node).toBeGreaterThan(0);
    // 18 spans an article in protobuf are well over 1 KB.
    expect(r.on.exportBytesPerArticle).toBeGreaterThan(1000);
    expect(r.on.exportRequests).toBeGreaterThan(0);
    expect(r.on.droppedSpans).toBe(0);
  }, 60_000);

  it("parses quoted CSV, computes quantiles and renders an SVG", () => {
    expect(parseCsv('a,b\n1,"x, ""y"""\n')).toEqual([["a", "b"], ["1", 'x, "y"']]);
    const q = quantiles([5, 1, 3, 2, 4]);
    expect([q.p50, q.max, q.count]).toEqual([3, 5, 5]);
    const svg = renderChart([{ title: "t", xLabel: "x", yLabel: "y", series: [{ name: "s", points: [[1, 2], [10, 20]] }], logX: true }]);
    expect(svg).toMatch(/^<svg[^>]*>/);
    expect(svg).toContain("<polyline");
  });
});
