/**
 * Measures pipeline throughput (runs/s) on this machine in two modes, one
 * after the other against the same embedded server:
 *   in-process : worker-host -> app.fetch in Node -> iovalkey
 *   http       : worker-host -> signed HTTP -> built bundle in workerd (Miniflare)
 *                -> @upstash/redis -> REST bridge -> Valkey
 * Run: npm run measure:http [-- --runs 2000 --users 1000]. Tuning comes from the usual env
 * (BATCH_SIZE, CONCURRENCY, PARTITIONS). `measureRuns` and `startHttpModeStack`
 * are reusable by the benchmark.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { settingsFor } from "../../../functions/config";
import { randomHex } from "../../../functions/envelope";
import { app, pipeline } from "../../../functions/news/index";
import type { Pipeline } from "../../../functions/pipeline";
import { redisFromEnv, type AppEnv } from "../../../functions/redis";
import { startRuns } from "../../../functions/runs";
import { loadConfig } from "../../config";
import { startHttpModeStack } from "../../http-mode";
import { startRuntime } from "../../runtime";
import type { Connection } from "../../valkey";
import { launchValkey } from "../../valkey-launcher";
import { buildWorkerBundle } from "../../worker-bundle";
import { waitForRuns } from "../news-check";
import { prepareSampleWorld, samplePayloads } from "../sample-work";
import { NewsSettings } from "../../../functions/news/config";

export interface Throughput {
  runs: number;
  completed: number;
  other: number;
  seconds: number;
  runsPerSecond: number;
}

/**
 * Starts one run per payload and waits until none is "running"; returns runs/s
 * from the first enqueue until the last run is seen finished (polled every 100 ms).
 */
export async function measureRuns({ env, conn, pipeline: p, payloads, timeoutMs = 300_000 }: { env: AppEnv; conn: Connection; pipeline: Pipeline; payloads: unknown[]; timeoutMs?: number }): Promise<Throughput> {
  const { keys, settings } = settingsFor(env);
  const started = performance.now();
  const runIds: string[] = [];
  for (let i = 0; i < payloads.length; i += 500) {
    runIds.push(...(await startRuns(redisFromEnv(env), payloads.slice(i, i + 500), { keys, pipeline: p, ttlSeconds: settings.CHECKPOINT_TTL_SECONDS })));
  }
  // Polls only the runs still pending, every 100 ms, so watching costs the server little.
  const statuses = await waitForRuns(conn, keys, runIds, { timeoutMs });
  const seconds = (performance.now() - started) / 1000;
  const completed = statuses.filter((s) => s === "completed").length;
  return { runs: runIds.length, completed, other: runIds.length - completed, seconds, runsPerSecond: runIds.length / seconds };
}

async function main(): Promise<void> {
  const argRuns = process.argv.indexOf("--runs");
  const count = argRuns > 0 ? Number(process.argv[argRuns + 1]) : 2000;
  const work = mkdtempSync(join(tmpdir(), "edgepipe-measure-"));
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const server = await launchValkey({ dataDir: join(work, "valkey"), appendOnly: false });
  try {
    const bundle = await buildWorkerBundle({ outdir: join(work, "worker") });
    const base = { ...process.env, VALKEY_URL: server.url, PORT: "0", HOST: "127.0.0.1", DEMO: "off" };
    // Distinct warm-up items, so the measured ones are not dropped as duplicates of them.
    const warmCount = Math.max(50, Math.floor(count / 10));
    const { source, payloads: all } = samplePayloads(pipeline, warmCount + count);
    const warmup = all.slice(0, warmCount);
    const payloads = all.slice(warmCount);
    const argUsers = process.argv.indexOf("--users");
    const users = argUsers > 0 ? Number(process.argv[argUsers + 1]) : 1000;
    console.log(`pipeline "${pipeline.name}" (${[...pipeline.stages.keys()].join(" -> ")}), ${count} runs per mode from ${source}, ${server.binary.flavor} ${server.binary.version}`);
    console.log(`worker bundle: ${(bundle.bytes / 1024).toFixed(1)} KiB raw, ${(bundle.gzipBytes / 1024).toFixed(1)} KiB gzip`);

    const inProcessConfig = loadConfig({ ...base, KEY_PREFIX: `mi${randomHex(3)}` }, { appSettings: NewsSettings });
    const runtime = await startRuntime({ config: inProcessConfig, pipeline, app, log });
    // A warm-up round first (JIT, script cache, connections), so both modes are measured warm.
    const world = await prepareSampleWorld(pipeline, runtime.env, { users });
    const inProcess = await measureRuns({ env: runtime.env, conn: runtime.conn, pipeline, payloads: warmup })
      .then(() => measureRuns({ env: runtime.env, conn: runtime.conn, pipeline, payloads }))
      .finally(() => runtime.close());

    const httpConfig = loadConfig({ ...base, KEY_PREFIX: `mh${randomHex(3)}`, UPSTASH_REDIS_REST_URL: "http://127.0.0.1:0", UPSTASH_REDIS_REST_TOKEN: randomHex(16) }, { appSettings: NewsSettings });
    const stack = await startHttpModeStack({ config: httpConfig, pipeline, workerd: { kind: "miniflare", scriptPath: bundle.scriptPath }, log });
    await prepareSampleWorld(pipeline, stack.env, { users });
    const http = await measureRuns({ env: stack.env, conn: stack.conn, pipeline, payloads: warmup })
      .then(() => measureRuns({ env: stack.env, conn: stack.conn, pipeline, payloads }))
      .finally(() => stack.close());

    const row = (name: string, t: Throughput) => `${name.padEnd(28)} ${t.runsPerSecond.toFixed(1).padStart(9)} runs/s  (${t.runs} runs in ${t.seconds.toFixed(2)} s, ${t.completed} completed, ${t.other} skipped/failed)`;
    console.log(`batch size ${inProcessConfig.BATCH_SIZE}, concurrency ${inProcessConfig.CONCURRENCY} per stage, partitions ${inProcessConfig.PARTITIONS}${world ? `, ${world}` : ""} (one run per ${pipeline.name === "news" ? "article: runs/s = articles/s" : "payload"})`);
    console.log(row("in-process", inProcess));
    console.log(row("http (workerd + bridge)", http));
    console.log(`http / in-process: ${(http.runsPerSecond / inProcess.runsPerSecond).toFixed(2)}`);
  } finally {
    await server.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().then(
    () => process.exit(0),
    (err) => {
      console.error(err instanceof Error ? (err.stack ?? err.message) : err);
      process.exit(1);
    },
  );
}
