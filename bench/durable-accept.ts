/**
 * The cost of DURABLE_ACCEPT=on: ingest throughput and latency of
 * `POST /v1/runs` (in-process, concurrent producers) on a server with AOF on,
 * with DURABLE_ACCEPT off (appendfsync everysec: a 202 may precede the fsync
 * by up to about a second), on with WAITAOF (everysec, group-committed), and
 * on with appendfsync always (the path of a server without WAITAOF). Each
 * configuration gets its own server in a temp dir (never 6379).
 *
 * Part of `npm run bench`; alone: `npm run bench:durable` (`--quick`).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { z } from "zod";
import { createApp } from "../functions/app";
import { randomHex } from "../functions/envelope";
import { createKeys } from "../functions/keys";
import { definePipeline, defineStage } from "../functions/pipeline";
import type { AppEnv } from "../functions/redis";
import { checkDurability, ValkeyFsyncBarrier, type DurabilityMode } from "../worker-host/fsync-barrier";
import { connectValkey, upstashOverValkey } from "../worker-host/valkey";
import { findServerBinary, launchValkey, type ServerBinary } from "../worker-host/valkey-launcher";
import { progress, quantiles } from "./stats";

export interface DurableAcceptPoint {
  label: string;
  appendfsync: "everysec" | "always";
  durableAccept: boolean;
  mode?: DurabilityMode;
  runsPerSecond: number;
  requestsPerSecond: number;
  latencyMs: { p50: number | null; p99: number | null };
  /** WAITAOF rounds per request (group commit: below 1 under concurrency). */
  roundsPerRequest?: number;
}

export interface DurableAcceptResult {
  server: string;
  concurrency: number;
  runsPerRequest: number;
  seconds: number;
  points: Array<DurableAcceptPoint | { label: string; notMeasured: string }>;
}

const only = defineStage({ name: "only", input: z.object({ n: z.number() }), next: [], handle: async ({ n }) => ({ result: { n } }) });
const pipeline = definePipeline({ name: "ingest-bench", stages: [only] });
const app = createApp({ pipeline });

async function measurePoint(
  binary: ServerBinary,
  { label, appendfsync, durableAccept }: { label: string; appendfsync: "everysec" | "always"; durableAccept: boolean },
  { concurrency, runsPerRequest, seconds }: { concurrency: number; runsPerRequest: number; seconds: number },
): Promise<DurableAcceptPoint | { label: string; notMeasured: string }> {
  const dir = mkdtempSync(join(tmpdir(), "edgepipe-bench-durable-"));
  const server = await launchValkey({ dataDir: dir, binary, appendOnly: true, extraArgs: ["--appendfsync", appendfsync] });
  const conn = connectValkey(server.url, { name: "bench-durable", log: () => {} });
  const keys = createKeys({ prefix: `d${randomHex(3)}` });
  let barrier: ValkeyFsyncBarrier | undefined;
  try {
    let mode: DurabilityMode | undefined;
    if (durableAccept) {
      const check = await checkDurability(conn).catch((err: Error) => err);
      if (check instanceof Error) return { label, notMeasured: check.message.split(":").slice(0, 2).join(":") };
      // With always, measure the path of a server without WAITAOF (the barrier waits for nothing).
      mode = appendfsync === "always" ? "appendfsync-always" : check.mode;
      if (appendfsync === "everysec" && mode !== "waitaof") return { label, notMeasured: `${server.binary.flavor} ${server.binary.version} has no WAITAOF` };
      barrier = new ValkeyFsyncBarrier({ source: conn, markKey: keys.fsyncMark(), mode, timeoutMs: 2000 });
    }
    const env: AppEnv = {
      REDIS: upstashOverValkey(conn),
      KEY_PREFIX: keys.prefix,
      BACKPRESSURE_MAX_LAG: "0",
      DURABLE_ACCEPT: durableAccept ? "on" : "off",
      ...(barrier ? { FSYNC_BARRIER: barrier } : {}),
    };
    const body = JSON.stringify({ payloads: Array.from({ length: runsPerRequest }, (_, n) => ({ n })) });
    const post = async () => {
      const res = await app.request("/v1/runs", { method: "POST", headers: { "content-type": "application/json" }, body }, env);
      if (res.status !== 202) throw new Error(`POST /v1/runs answered ${res.status}: ${await res.text()}`);
      await res.arrayBuffer();
    };
    // Warm-up (scripts loaded, connections open), then the measured window.
    await Promise.all(Array.from({ length: concurrency }, () => post()));
    const rounds0 = barrier?.counts.rounds ?? 0;
    const latencies: number[] = [];
    let requests = 0;
    const started = performance.now();
    const until = started + seconds * 1000;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < until) {
          const t = performance.now();
          await post();
          latencies.push(performance.now() - t);
          requests++;
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;
    const q = quantiles(latencies);
    const point: DurableAcceptPoint = {
      label,
      appendfsync,
      durableAccept,
      ...(mode ? { mode } : {}),
      runsPerSecond: Math.round((requests * runsPerRequest) / elapsed),
      requestsPerSecond: Math.round(requests / elapsed),
      latencyMs: { p50: q.p50, p99: q.p99 },
      ...(barrier && mode === "waitaof" ? { roundsPerRequest: Math.round(((barrier.counts.rounds - rounds0) / requests) * 100) / 100 } : {}),
    };
    progress(`durable accept, ${label}: ${point.runsPerSecond} runs/s, p50 ${point.latencyMs.p50} ms, p99 ${point.latencyMs.p99} ms${point.roundsPerRequest !== undefined ? `, ${point.roundsPerRequest} WAITAOF rounds per request` : ""}`);
    return point;
  } finally {
    await barrier?.close();
    conn.disconnect();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Measures the three configurations on the server binary the launcher finds (VALKEY_SERVER first). */
export async function measureDurableAccept({ quick = false }: { quick?: boolean } = {}): Promise<DurableAcceptResult> {
  const binary = findServerBinary();
  const opts = { concurrency: 16, runsPerRequest: 10, seconds: quick ? 2 : 6 };
  progress(`durable accept: ${binary.flavor} ${binary.version}, ${opts.concurrency} concurrent producers, ${opts.runsPerRequest} runs per POST /v1/runs, ${opts.seconds} s each`);
  const points: DurableAcceptResult["points"] = [];
  for (const p of [
    { label: "DURABLE_ACCEPT=off, appendfsync everysec", appendfsync: "everysec" as const, durableAccept: false },
    { label: "DURABLE_ACCEPT=on, WAITAOF, appendfsync everysec", appendfsync: "everysec" as const, durableAccept: true },
    { label: "DURABLE_ACCEPT=on, appendfsync always (no WAITAOF)", appendfsync: "always" as const, durableAccept: true },
  ]) {
    points.push(await measurePoint(binary, p, opts));
  }
  return { server: `${binary.flavor} ${binary.version}`, ...opts, points };
}

/** Table rows of the bench for a result. */
export function durableAcceptRows(result: DurableAcceptResult | { notMeasured: string }): Array<{ row: string; ours: string; baseline: string; ratio: string; target: string; verdict: string }> {
  if ("notMeasured" in result) return [{ row: "8 ingest with DURABLE_ACCEPT", ours: `not measured (${result.notMeasured})`, baseline: "-", ratio: "-", target: "-", verdict: "-" }];
  const off = result.points.find((p): p is DurableAcceptPoint => "runsPerSecond" in p && !p.durableAccept);
  return result.points
    .filter((p) => "runsPerSecond" in p ? p.durableAccept : true)
    .map((p) => {
      if (!("runsPerSecond" in p)) return { row: `8 ingest, ${p.label}`, ours: `not measured (${p.notMeasured})`, baseline: "-", ratio: "-", target: "-", verdict: "-" };
      const fmt = (x: DurableAcceptPoint) => `${x.runsPerSecond.toLocaleString("en-US")} runs/s, p50 ${x.latencyMs.p50} ms, p99 ${x.latencyMs.p99} ms`;
      return {
        row: `8 ingest, ${p.label} (${result.server}, ${result.concurrency} producers x ${result.runsPerRequest} runs)`,
        ours: `${fmt(p)}${p.roundsPerRequest !== undefined ? ` (${p.roundsPerRequest} WAITAOF rounds/request)` : ""}`,
        baseline: off ? `off, everysec: ${fmt(off)}` : "-",
        ratio: off ? `${(p.runsPerSecond / off.runsPerSecond).toFixed(2)}x` : "-",
        target: "(the cost of waiting for the fsync)",
        verdict: "-",
      };
    });
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  measureDurableAccept({ quick: process.argv.includes("--quick") }).then(
    (result) => {
      console.log(`\ningest cost of DURABLE_ACCEPT (${result.server}, ${result.concurrency} producers x ${result.runsPerRequest} runs per POST, ${result.seconds} s each):`);
      for (const p of result.points) {
        if ("notMeasured" in p) console.log(`  ${p.label}: not measured (${p.notMeasured})`);
        else console.log(`  ${p.label}: ${p.runsPerSecond.toLocaleString("en-US")} runs/s (${p.requestsPerSecond} requests/s), latency p50 ${p.latencyMs.p50} ms, p99 ${p.latencyMs.p99} ms${p.roundsPerRequest !== undefined ? `, ${p.roundsPerRequest} WAITAOF rounds per request` : ""}`);
      }
      process.exit(0);
    },
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
