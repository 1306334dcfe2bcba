/**
 * Row 4's floor: what this machine and server give a process that does
 * nothing but wait, at the same pacing as the latency rows (one operation per
 * ~1 ms tick), measured in a fresh process (bench/latency-process.ts with
 * MODE=floor). A stage hop needs at least one commit round trip plus one
 * blocked-read wake-up, so its p99 cannot sit below these.
 * - idle event-loop delay: a 1 ms-resolution timer in an idle Node process;
 * - PING round trip: one command, nothing else on the connection;
 * - XADD -> blocked XREAD wake-up: an XADD on one connection to the reply of
 *   an XREAD BLOCK waiting on another (the server's wake-up of a reader).
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import { randomHex } from "../functions/envelope";
import { connectValkey } from "../worker-host/valkey";
import { preciseNow } from "./pass-through-pipeline";
import { quantiles, type Quantiles } from "./stats";

export interface FloorPoint {
  seconds: number;
  idleEventLoopDelayMs: { p50: number; p99: number; max: number };
  pingRttMs: Quantiles;
  wakeUpMs: Quantiles;
}

const tick = () => new Promise<void>((r) => setTimeout(r, 1));

export async function measureFloor(url: string, seconds: number): Promise<FloorPoint> {
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  eld.disable();
  const ms = (ns: number) => Math.round(ns / 1e3) / 1e3;

  const conn = connectValkey(url, { name: "bench-floor" });
  const reader = conn.duplicate({ connectionName: "bench-floor-reader", enableAutoPipelining: false });
  const stream = `floor${randomHex(3)}`;
  try {
    await conn.ping();
    const rtts: number[] = [];
    for (const end = performance.now() + seconds * 1000; performance.now() < end; ) {
      const t = performance.now();
      await conn.ping();
      rtts.push(performance.now() - t);
      await tick();
    }
    const wakeUps: number[] = [];
    let reading = true;
    const loop = (async () => {
      let last = "$";
      while (reading) {
        const reply = (await reader.xread("BLOCK", 100, "STREAMS", stream, last)) as Array<[string, Array<[string, string[]]>]> | null;
        if (!reply) continue;
        for (const [id, fields] of reply[0][1]) {
          wakeUps.push(preciseNow() - Number(fields[1]));
          last = id;
        }
      }
    })();
    for (const end = performance.now() + seconds * 1000; performance.now() < end; ) {
      await conn.xadd(stream, "*", "t", String(preciseNow()));
      await tick();
    }
    reading = false;
    await loop;
    return {
      seconds,
      idleEventLoopDelayMs: { p50: ms(eld.percentile(50)), p99: ms(eld.percentile(99)), max: ms(eld.max) },
      pingRttMs: quantiles(rtts),
      wakeUpMs: quantiles(wakeUps),
    };
  } finally {
    await conn.del(stream).catch(() => {});
    reader.disconnect();
    await conn.quit().catch(() => {});
  }
}
