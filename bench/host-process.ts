/**
 * A worker-host alone in its own process, so the bench can read its RSS
 * without the producer, the article set and BullMQ in the same heap. Started
 * by bench/run.ts with VALKEY_URL, KEY_PREFIX, BENCH_PIPELINE
 * (pass-through | news) and BENCH_USERS (demo users to seed for news); prints
 * "ready heap-limit-mb=<V8 heap limit>" once reading, stops on SIGTERM.
 */
import { getHeapStatistics } from "node:v8";
import { createApp } from "../functions/app";
import { settingsFor } from "../functions/config";
import type { Pipeline } from "../functions/pipeline";
import type { AppEnv } from "../functions/redis";
import { loadConfig, workerTuning } from "../worker-host/config";
import { WorkerHost } from "../worker-host/host";
import { InProcessInvoker } from "../worker-host/invoker";
import { connectValkey, upstashOverValkey } from "../worker-host/valkey";
import { passThroughPipeline } from "./pass-through-pipeline";

async function pipelineFor(name: string): Promise<{ pipeline: Pipeline; app: { fetch(r: Request, env?: unknown): Response | Promise<Response> } }> {
  if (name === "news") {
    const index = await import("../functions/news/index");
    return { pipeline: index.pipeline, app: index.app };
  }
  const pipeline = passThroughPipeline();
  return { pipeline, app: createApp({ pipeline }) };
}

const url = process.env.VALKEY_URL;
if (!url) throw new Error("VALKEY_URL is required");
const conn = connectValkey(url, { name: "bench-host-process" });
const env: AppEnv = { REDIS: upstashOverValkey(conn), KEY_PREFIX: process.env.KEY_PREFIX ?? "ep" };
const { pipeline, app } = await pipelineFor(process.env.BENCH_PIPELINE ?? "pass-through");
const users = Number(process.env.BENCH_USERS ?? 0);
if (users > 0) {
  const { seedDemoUsers } = await import("../functions/news/users");
  await seedDemoUsers(env.REDIS!, settingsFor(env).keys, users);
}
// The stage-worker tuning `npm start` would use with this environment (BATCH_SIZE, CONCURRENCY, ...).
const tuning = workerTuning(loadConfig(process.env));
const host = new WorkerHost({ pipeline, keys: settingsFor(env).keys, conn, invoker: new InProcessInvoker(app, env), tuning, log: (l) => process.stderr.write(`${l}\n`) });
await host.run();
// BENCH_MEMLOG=1 traces heap vs RSS every 500 ms (how the RSS figure was explained).
if (process.env.BENCH_MEMLOG) {
  setInterval(() => {
    const m = process.memoryUsage();
    const mb = (v: number) => (v / 2 ** 20).toFixed(0);
    process.stderr.write(`mem rss ${mb(m.rss)} heapTotal ${mb(m.heapTotal)} heapUsed ${mb(m.heapUsed)} external ${mb(m.external)}\n`);
  }, 500).unref();
}
process.stdout.write(`ready heap-limit-mb=${Math.round(getHeapStatistics().heap_size_limit / 2 ** 20)}\n`);
process.once("SIGTERM", () => {
  void host
    .close()
    .then(() => conn.quit())
    .finally(() => process.exit(0));
});
