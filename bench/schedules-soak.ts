/**
 * `npm run soak:schedules`: cron schedules and delayed runs over real time
 * with two worker-hosts (two runtimes, each its own connections, on one
 * server from the project's launcher). A `* * * * *` schedule for
 * SOAK_MINUTES (default 10) minutes: every tick must start exactly one run
 * whose handler ran once; delayed runs started every 20 s must start within
 * a second of their time. Prints the figures; exits 1 when a tick was missed
 * or doubled.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { createApp } from "../functions/app";
import { randomHex } from "../functions/envelope";
import { definePipeline, defineStage } from "../functions/pipeline";
import { readRun } from "../functions/runs";
import { scheduleRunId } from "../functions/schedules";
import { loadConfig } from "../worker-host/config";
import { startRuntime } from "../worker-host/runtime";
import { launchValkey } from "../worker-host/valkey-launcher";

const minutes = Number(process.env.SOAK_MINUTES ?? 10);
const prefix = `soak${randomHex(3)}`;
const tick = defineStage({
  name: "tick",
  input: z.object({ schedule: z.string().optional(), tick: z.string().optional(), delayed: z.number().optional() }),
  next: [],
  handle: async (p, { redis, keys }) => {
    if (p.tick) await redis.hincrby(`${keys.prefix}:ticks`, p.tick, 1);
    return { result: p };
  },
});
const pipeline = definePipeline({ name: "soak", stages: [tick], schedules: [{ name: "every-minute", cron: "* * * * *" }] });
const app = createApp({ pipeline });

const dir = mkdtempSync(join(tmpdir(), "edgepipe-soak-"));
const server = await launchValkey({ dataDir: dir, appendOnly: false });
const config = () => loadConfig({ VALKEY_URL: server.url, PORT: "0", DEMO: "off", KEY_PREFIX: prefix, WEB_DIR: "", BLOCK_MS: "200" });
const hosts = [await startRuntime({ config: config(), pipeline, app, log: () => {} }), await startRuntime({ config: config(), pipeline, app, log: () => {} })];
const started = Date.now();
console.log(`soak: 2 hosts, schedule "* * * * *" for ${minutes} min, a delayed run (delayMs 5000) every 20 s; ${server.url}`);
const delayed: string[] = [];
const end = started + minutes * 60_000;
while (Date.now() < end) {
  const res = await fetch(`${hosts[delayed.length % 2].url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads: [{ delayed: Date.now() }], delayMs: 5000 }) });
  delayed.push(((await res.json()) as { runIds: string[] }).runIds[0]);
  const left = end - Date.now();
  process.stdout.write(`\r${Math.round((Date.now() - started) / 1000)} s of ${minutes * 60} s`);
  await new Promise((r) => setTimeout(r, Math.min(20_000, Math.max(0, left))));
}
await new Promise((r) => setTimeout(r, 8000));
const finished = Date.now();
const { keys } = await import("../functions/config").then((m) => m.settingsFor(hosts[0].env));
const redis = hosts[0].env.REDIS!;
const ticks = pipeline.schedules[0].parsed.ticksBetween(started - 60_000, finished - 8000, 10_000);
let missing = 0;
let doubled = 0;
const counts = ((await redis.hgetall<Record<string, number>>(`${prefix}:ticks`)) ?? {}) as Record<string, number>;
for (const t of ticks) {
  const run = await readRun(redis, keys, pipeline, scheduleRunId("every-minute", t));
  const starts = run?.log.filter((e) => e.event === "enqueued").length ?? 0;
  const calls = Number(counts[new Date(t).toISOString()] ?? 0);
  if (starts === 0 || calls === 0) missing++;
  if (starts > 1 || calls > 1) doubled++;
}
const late: number[] = [];
for (const id of delayed) {
  const run = await readRun(redis, keys, pipeline, id);
  const start = run?.log.find((e) => e.event === "enqueued");
  if (start) late.push(Number(start.lateMs));
}
late.sort((a, b) => a - b);
const fired = hosts.map((h) => h.host.due?.figures.fired ?? 0);
console.log(`\nticks in the window: ${ticks.length}; fired by host 1/2: ${fired.join("/")}; missing ${missing}; doubled ${doubled}`);
console.log(`delayed runs: ${delayed.length}, started ${late.length}; lateness p50 ${late[Math.floor(late.length / 2)]} ms, max ${late.at(-1)} ms (DUE_POLL_MS 250)`);
await Promise.all(hosts.map((h) => h.close()));
await server.stop();
rmSync(dir, { recursive: true, force: true });
process.exit(missing === 0 && doubled === 0 && late.length === delayed.length ? 0 : 1);
