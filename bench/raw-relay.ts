/**
 * Baseline C for row 4: the floor of a stage hop on this machine and server.
 * Five relays, each a plain iovalkey client on its own blocking connection:
 * XREADGROUP BLOCK, then per batch one pipeline of XADD (the same payload
 * string to the next stream, re-stamped) and XACK. No Lua, no checkpoint, no
 * activity log, no JSON parse, no handler, no dispatch: what is left is the
 * transport itself (socket round trips, the server's stream commands, one
 * Node event loop). The producer, the offered load, the warm-up and the hop
 * definition are those of the edgepipe row (bench/latency.ts), in a fresh
 * process of its own (bench/latency-process.ts with MODE=raw).
 */
import { PerformanceObserver, monitorEventLoopDelay } from "node:perf_hooks";
import type { BenchArticle } from "./articles";
import { cpuMeter } from "./harness";
import { PASS_STAGES, preciseNow } from "./pass-through-pipeline";
import { summarizeLatency, type LatencyPoint } from "./latency";
import { connectValkey, type Connection } from "../worker-host/valkey";
import { randomHex } from "../functions/envelope";

type ReadReply = Array<[string, Array<[string, string[]]>]> | null;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Offers `rate` articles/s through five raw relays; returns the hop latencies of the measured window. */
export async function measureRawRelayPoint({ url, rate, seconds, warmupSeconds, articles }: { url: string; rate: number; seconds: number; warmupSeconds: number; articles: BenchArticle[] }): Promise<LatencyPoint> {
  const prefix = `raw${randomHex(3)}`;
  const streams = PASS_STAGES.map((s) => `${prefix}:s:${s}`);
  const conn = connectValkey(url, { name: "raw-relay" });
  const producer = connectValkey(url, { name: "raw-producer" });
  const blocking: Connection[] = [];
  const hops = new Map<string, number[]>(PASS_STAGES.map((s) => [s, []]));
  const endToEnd: number[] = [];
  let recording = false;
  let running = true;
  let lastDone = 0;
  try {
    for (const s of streams) await conn.xgroup("CREATE", s, "g", "0", "MKSTREAM");
    const loops = streams.map(async (stream, i) => {
      const c = conn.duplicate({ connectionName: `raw-relay:${i}`, enableAutoPipelining: false });
      blocking.push(c);
      const stage = PASS_STAGES[i];
      const last = i + 1 === streams.length;
      while (running) {
        let reply: ReadReply;
        try {
          reply = (await c.xreadgroup("GROUP", "g", "c", "COUNT", 100, "BLOCK", 200, "STREAMS", stream, ">")) as ReadReply;
        } catch (err) {
          if (!running) break;
          throw err;
        }
        if (!reply) continue;
        const entries = reply[0][1];
        // The relay's own connection is free until its next read: XADDs and XACKs go there.
        const pipe = c.pipeline();
        for (const [id, fields] of entries) {
          // fields: e <payload> t <emit stamp> t0 <enqueue stamp>
          const now = preciseNow();
          const t = Number(fields[3]);
          const t0 = Number(fields[5]);
          if (recording) {
            hops.get(stage)!.push(now - t);
            if (last) endToEnd.push(now - t0);
          }
          if (!last) pipe.xadd(streams[i + 1], "*", "e", fields[1], "t", String(preciseNow()), "t0", fields[5]);
          pipe.xack(stream, "g", id);
        }
        await pipe.exec();
        if (last) lastDone += entries.length;
      }
    });

    const eld = monitorEventLoopDelay({ resolution: 1 });
    const gcPauses: number[] = [];
    const gcObserver = new PerformanceObserver((list) => {
      if (recording) for (const e of list.getEntries()) gcPauses.push(e.duration);
    });
    gcObserver.observe({ entryTypes: ["gc"] });
    let meter: Awaited<ReturnType<typeof cpuMeter>> | undefined;
    const warm = setTimeout(() => {
      recording = true;
      eld.enable();
      void cpuMeter(producer).then((m) => (meter = m));
    }, warmupSeconds * 1000);

    // The same open-loop producer as offerLoad: a ~1 ms tick adds what is due.
    const started = performance.now();
    let sent = 0;
    for (;;) {
      const elapsed = (performance.now() - started) / 1000;
      if (elapsed >= seconds + warmupSeconds) break;
      const due = Math.floor(rate * elapsed);
      if (due > sent) {
        const now = String(preciseNow());
        const pipe = producer.pipeline();
        for (let k = sent; k < due; k++) pipe.xadd(streams[0], "*", "e", JSON.stringify(articles[k % articles.length]), "t", now, "t0", now);
        sent = due;
        void pipe.exec();
      }
      await sleep(1);
    }
    clearTimeout(warm);
    const deadline = Date.now() + 60_000;
    while (lastDone < sent && Date.now() < deadline) await sleep(2);
    recording = false;
    const measured = endToEnd.length;
    const cpuUsPerArticle = meter && measured > 0 ? await meter.stop(measured) : undefined;
    eld.disable();
    gcObserver.disconnect();
    running = false;
    await Promise.allSettled(loops);
    return summarizeLatency({ rate, seconds, offered: sent, measured, hops, endToEnd, eld, gcPauses, cpuUsPerArticle });
  } finally {
    running = false;
    for (const c of blocking) c.disconnect();
    await conn.quit().catch(() => {});
    await producer.quit().catch(() => {});
  }
}
