/**
 * Cluster rows of the bench (`npm run bench:cluster`, and at the end of
 * `npm run bench`): the pass-through and news pipelines through the real
 * runtime on one server vs a local 3-master cluster on the same machine (the
 * same cores, so this shows the cluster's overhead, not a speed-up), and a
 * CPU-heavy stage with 1 and 2 worker-host processes on the cluster. Each row
 * says where the CPU went (host process(es) and servers), which is what
 * bounds it on 2 cores.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Cluster } from "iovalkey";
import { createApp } from "../functions/app";
import { settingsFor } from "../functions/config";
import { randomHex } from "../functions/envelope";
import { CLUSTER_KEY_DEFAULTS, createKeys } from "../functions/keys";
import { NewsSettings } from "../functions/news/config";
import { app as newsApp, pipeline as newsPipeline } from "../functions/news/index";
import { seedDemoUsers } from "../functions/news/users";
import type { Pipeline } from "../functions/pipeline";
import { startRuns } from "../functions/runs";
import { launchCluster, type RunningCluster } from "../worker-host/cluster-launcher";
import { loadConfig } from "../worker-host/config";
import { connectCluster, upstashFor, waitReady } from "../worker-host/data-store";
import { runStatuses } from "../worker-host/news/news-check";
import { startRuntime } from "../worker-host/runtime";
import { asCluster, type Connection } from "../worker-host/valkey";
import { launchValkey, type RunningValkey } from "../worker-host/valkey-launcher";
import { loadArticles } from "./articles";
import { passThroughPipeline } from "./pass-through-pipeline";
import { progress } from "./stats";

export interface ClusterRow {
  row: string;
  ours: string;
  baseline: string;
  ratio: string;
  target: string;
  verdict: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** used_cpu_sys + used_cpu_user of every master (or the one server), seconds. */
async function serversCpu(conn: Connection): Promise<number> {
  const nodes = (conn as unknown as { isCluster?: boolean }).isCluster ? asCluster(conn).nodes("master") : [conn];
  let total = 0;
  for (const n of nodes) {
    const info = String(await n.info("cpu"));
    const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(info)?.[1] ?? 0);
    total += field("used_cpu_user") + field("used_cpu_sys");
  }
  return total;
}

/** Waits until none of `ids` is running (statuses read in chunks), bounded. */
async function waitDone(conn: Connection, keys: ReturnType<typeof createKeys>, ids: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let pending = ids;
  while (pending.length > 0) {
    const statuses = await runStatuses(conn, keys, pending);
    pending = pending.filter((_, i) => statuses[i] === "running" || statuses[i] === "error");
    if (pending.length === 0) return;
    if (Date.now() > deadline) throw new Error(`${pending.length} runs still running after ${timeoutMs} ms`);
    await sleep(100);
  }
}

interface Throughput {
  perSecond: number;
  /** CPU seconds per 1,000 runs: host process(es), servers. */
  hostCpuPer1k: number;
  serverCpuPer1k: number;
}

/** Runs `payloads` through the real runtime on the store `vars` names; measures from the first enqueue to the last completion. */
async function throughputOn(vars: Record<string, string>, pipeline: Pipeline, app: { fetch(r: Request, env?: unknown): Response | Promise<Response> }, payloads: unknown[], users: number): Promise<Throughput> {
  const config = loadConfig({ PORT: "0", DEMO: "off", WEB_DIR: "", KEY_PREFIX: `b${randomHex(3)}`, BACKPRESSURE_MAX_LAG: "0", FEED_CAP: "500", ...vars }, { appSettings: NewsSettings });
  const rt = await startRuntime({ config, pipeline, app, log: () => {} });
  try {
    const keys = settingsFor(rt.env).keys;
    if (users > 0) await seedDemoUsers(rt.env.REDIS!, keys, users);
    const cpu0 = process.cpuUsage();
    const server0 = await serversCpu(rt.conn);
    const started = performance.now();
    const ids: string[] = [];
    for (let i = 0; i < payloads.length; i += 500) ids.push(...(await startRuns(rt.env.REDIS!, payloads.slice(i, i + 500), { keys, pipeline })));
    await waitDone(rt.conn, keys, ids, 300_000);
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const server = (await serversCpu(rt.conn)) - server0;
    const k = payloads.length / 1000;
    return { perSecond: Math.round(payloads.length / seconds), hostCpuPer1k: (cpu.user + cpu.system) / 1e6 / k, serverCpuPer1k: server / k };
  } finally {
    await rt.close();
  }
}

/** utime + stime of a process from /proc, seconds. */
function processCpu(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** `hosts` host processes on the cluster running the CPU-heavy stage; the bench process only enqueues. */
async function cpuHeavyOn(cluster: RunningCluster, hosts: number, runs: number): Promise<Throughput & { hosts: number }> {
  const prefix = `h${randomHex(3)}`;
  const children: ChildProcess[] = [];
  const conn = connectCluster(cluster.startupNodes, { log: () => {} });
  try {
    await waitReady(conn, 10_000, "bench cluster client");
    for (let i = 0; i < hosts; i++) {
      const child = spawn(process.execPath, ["--import", "tsx", "worker-host/cli.ts", "start", "--pipeline", "bench/cpu-heavy-pipeline.ts"], {
        env: { ...process.env, VALKEY_URL: "", VALKEY_CLUSTER_NODES: cluster.seedList, KEY_PREFIX: prefix, PORT: "0", DEMO: "off", WEB_DIR: "", BATCH_SIZE: "20", BACKPRESSURE_MAX_LAG: "0" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      child.stdout!.on("data", (d) => (out += d));
      child.stderr!.on("data", (d) => (out += d));
      children.push(child);
      const deadline = Date.now() + 60_000;
      while (!/listening on/.test(out)) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`host ${i} did not start:\n${out}`);
        await sleep(100);
      }
    }
    const { default: pipeline } = await import("./cpu-heavy-pipeline");
    const keys = createKeys({ prefix, partitions: CLUSTER_KEY_DEFAULTS.partitions, feedBuckets: CLUSTER_KEY_DEFAULTS.feedBuckets });
    const redis = upstashFor(conn);
    const cpu0 = children.map((c) => processCpu(c.pid!));
    const server0 = await serversCpu(conn);
    const started = performance.now();
    const ids: string[] = [];
    for (let i = 0; i < runs; i += 500) ids.push(...(await startRuns(redis, Array.from({ length: Math.min(500, runs - i) }, (_, k) => ({ n: i + k })), { keys, pipeline })));
    await waitDone(conn, keys, ids, 300_000);
    const seconds = (performance.now() - started) / 1000;
    const hostCpu = children.reduce((sum, c, i) => sum + processCpu(c.pid!) - cpu0[i], 0);
    const server = (await serversCpu(conn)) - server0;
    const k = runs / 1000;
    return { hosts, perSecond: Math.round(runs / seconds), hostCpuPer1k: hostCpu / k, serverCpuPer1k: server / k };
  } finally {
    for (const c of children) c.kill("SIGTERM");
    await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once("exit", r)))));
    conn.disconnect();
  }
}

const cpuNote = (t: Throughput) => `; CPU per 1k runs: host ${t.hostCpuPer1k.toFixed(2)} s, servers ${t.serverCpuPer1k.toFixed(2)} s`;

/** Measures the cluster rows; `quick` runs fewer items. */
export async function clusterRows({ quick = false }: { quick?: boolean } = {}): Promise<ClusterRow[]> {
  const dir = mkdtempSync(join(tmpdir(), "edgepipe-bench-cluster-"));
  let single: RunningValkey | undefined;
  let cluster: RunningCluster | undefined;
  const rows: ClusterRow[] = [];
  try {
    single = await launchValkey({ dataDir: join(dir, "single"), appendOnly: false });
    cluster = await launchCluster({ masters: 3, dataDir: join(dir, "cluster"), appendOnly: false });
    const passN = quick ? 2000 : 10_000;
    const newsN = quick ? 600 : 3000;
    const cpuN = quick ? 600 : 2000;
    const { articles } = loadArticles(Math.max(passN, newsN));
    const pass = passThroughPipeline();
    const passApp = createApp({ pipeline: pass });
    const passPayloads = articles.slice(0, passN).map((a) => ({ ...a, t: 0, t0: 0 }));
    const newsPayloads = articles.slice(0, newsN).map((a) => ({ title: a.title, body: a.body }));
    for (const [name, pipeline, app, payloads, users] of [
      ["pass-through, 5 stages", pass, passApp, passPayloads, 0],
      ["news, 5 stages, 300 users", newsPipeline, newsApp, newsPayloads, 300],
    ] as const) {
      progress(`cluster row: ${name}, ${payloads.length} runs on one server`);
      const one = await throughputOn({ VALKEY_URL: single.url }, pipeline, app, payloads as unknown[], users);
      progress(`cluster row: ${name}, ${payloads.length} runs on 3 masters`);
      const three = await throughputOn({ VALKEY_CLUSTER_NODES: cluster.seedList }, pipeline, app, payloads as unknown[], users);
      rows.push({
        row: `9 ${name}: 3-master cluster vs one server (same 2 cores)`,
        ours: `${three.perSecond.toLocaleString("en-US")} runs/s${cpuNote(three)}`,
        baseline: `one server ${one.perSecond.toLocaleString("en-US")} runs/s${cpuNote(one)}`,
        ratio: `${(three.perSecond / one.perSecond).toFixed(2)}x`,
        target: "(overhead, not speed-up)",
        verdict: "-",
      });
    }
    progress(`cluster row: CPU-heavy stage, ${cpuN} runs, 1 host process`);
    const h1 = await cpuHeavyOn(cluster, 1, cpuN);
    progress(`cluster row: CPU-heavy stage, ${cpuN} runs, 2 host processes`);
    const h2 = await cpuHeavyOn(cluster, 2, cpuN);
    rows.push({
      row: "9 CPU-heavy stage (2 ms of CPU per run) on 3 masters: 2 vs 1 worker-host processes",
      ours: `2 hosts ${h2.perSecond.toLocaleString("en-US")} runs/s${cpuNote(h2)}`,
      baseline: `1 host ${h1.perSecond.toLocaleString("en-US")} runs/s${cpuNote(h1)}`,
      ratio: `${(h2.perSecond / h1.perSecond).toFixed(2)}x`,
      target: "(bounded by host CPU: 2 cores)",
      verdict: "-",
    });
    return rows;
  } finally {
    await cluster?.stop();
    await single?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// `npm run bench:cluster`: the rows alone.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const quick = process.argv.includes("--quick");
  clusterRows({ quick }).then(
    (rows) => {
      for (const r of rows) console.log(`${r.row}\n  ours:     ${r.ours}\n  baseline: ${r.baseline}\n  ratio:    ${r.ratio} ${r.target}`);
      process.exit(0);
    },
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
