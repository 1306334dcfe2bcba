/**
 * Several worker-hosts on one 3-master cluster, each a real `edgepipe start`
 * process: host A is killed with kill -9 mid-run, host C joins mid-run. Every
 * run completes, every step is committed once (one log entry per stage per
 * run, one output per first-stage entry), C runs a share of the work, and
 * /v1/stats of any host adds up all hosts.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomHex } from "../functions/envelope";
import { CLUSTER_KEY_DEFAULTS, createKeys, type Keys } from "../functions/keys";
import { connectCluster, waitReady } from "../worker-host/data-store";
import { runStatuses } from "../worker-host/news/news-check";
import { execMany, type Connection } from "../worker-host/valkey";
import { startTestCluster, type TestCluster } from "./helpers/cluster";
import { eventually } from "./helpers/valkey";
import { nodeArgs } from "./helpers/node-entry";

const RUNS = 900;

interface Host {
  child: ChildProcess;
  url: string;
  output: () => string;
  exited: Promise<number | null>;
}

let t: TestCluster;
let conn: Connection;
let keys: Keys;
const prefix = `h${randomHex(3)}`;
const hosts: Host[] = [];
/** A (killed), B, C (joins), in that order. */
let named: Host[] = [];
let runIds: string[] = [];
let statuses: string[] = [];
let killedAt = 0;
let joinedAt = 0;

async function startHost(): Promise<Host> {
  const child = spawn(process.execPath, nodeArgs("worker-host/cli.ts", ["start", "--pipeline", "tests/fixtures/host-share-pipeline.ts"]), {
    env: {
      ...process.env,
      VALKEY_URL: "",
      VALKEY_CLUSTER_NODES: t.cluster.seedList,
      KEY_PREFIX: prefix,
      PORT: "0",
      DEMO: "off",
      WEB_DIR: "",
      BLOCK_MS: "200",
      BATCH_SIZE: "1",
      VISIBILITY_TIMEOUT_MS: "3000",
      WORK_MS: "200",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  const url = await eventually(() => /listening on (\S+)/.exec(out)?.[1], { timeoutMs: 60_000 }).catch((err) => {
    child.kill("SIGKILL");
    throw new Error(`${(err as Error).message}\n${out}`);
  });
  const host = { child, url, output: () => out, exited };
  hosts.push(host);
  return host;
}

async function completed(): Promise<number> {
  return (await runStatuses(conn, keys, runIds)).filter((s) => s === "completed").length;
}

async function ranByPid(stage: string): Promise<Map<number, number>> {
  const flat = (await conn.hgetall(`${prefix}:ran:${stage}`)) as Record<string, string>;
  return new Map(Object.entries(flat).map(([pid, n]) => [Number(pid), Number(n)]));
}

beforeAll(async () => {
  t = await startTestCluster({ masters: 3 });
  conn = connectCluster(t.cluster.startupNodes, { log: () => {} });
  await waitReady(conn, 10_000, "test cluster client");
  keys = createKeys({ prefix, partitions: CLUSTER_KEY_DEFAULTS.partitions, feedBuckets: CLUSTER_KEY_DEFAULTS.feedBuckets });
  const [a, b] = await Promise.all([startHost(), startHost()]);
  const post = async (from: number, to: number) => {
    for (let i = from; i < to; i += 200) {
      const res = await fetch(`${b.url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads: Array.from({ length: Math.min(200, to - i) }, (_, k) => ({ n: i + k })) }) });
      expect(res.status).toBe(202);
      runIds.push(...((await res.json()) as { runIds: string[] }).runIds);
    }
  };
  // Two thirds first; the rest once C listens (C starts slowly on a loaded machine, and must find work).
  await post(0, (RUNS * 2) / 3);
  // Mid-run: A dies without a goodbye (its delivered, uncommitted entries are reclaimed by the others) ...
  await eventually(async () => (await completed()) >= RUNS * 0.15 || undefined, { timeoutMs: 120_000, stepMs: 100 });
  killedAt = await completed();
  a.child.kill("SIGKILL");
  await a.exited;
  // ... and C joins.
  const c = await startHost();
  named = [a, b, c];
  joinedAt = await completed();
  await post((RUNS * 2) / 3, RUNS);
  await eventually(async () => (await completed()) === RUNS || undefined, { timeoutMs: 180_000, stepMs: 200 });
  statuses = await runStatuses(conn, keys, runIds);
}, 400_000);

afterAll(async () => {
  for (const h of hosts) if (h.child.exitCode === null) h.child.kill("SIGKILL");
  conn?.disconnect();
  await t?.stop();
});

describe("two hosts, one killed with kill -9 mid-run, a third joining", () => {
  it("completes every run", () => {
    console.log(`[cluster-hosts] ${RUNS} runs; host A killed at ${killedAt} completed, host C joined at ${joinedAt} completed`);
    expect(killedAt).toBeLessThan(RUNS);
    expect(statuses.filter((s) => s !== "completed")).toEqual([]);
  });

  it("commits every step once: three log entries per run, one second-stage entry per run", async () => {
    const logs = await execMany(conn, runIds.map((id) => ["xlen", keys.runLog(id)]));
    const wrong = logs.map(([, n], i) => [runIds[i], Number(n)] as const).filter(([, n]) => n !== 3);
    expect(wrong).toEqual([]);
    const second = await Promise.all(keys.allPartitions.map((p) => conn.xlen(keys.stream("second", p))));
    expect(second.reduce((a, b) => a + b, 0)).toBe(RUNS);
  });

  it("the joining host ran a share of the work; handlers ran again only for what the killed host had in hand", async () => {
    const [a, b, c] = named.map((h) => h.child.pid!);
    const first = await ranByPid("first");
    const second = await ranByPid("second");
    const total = (m: Map<number, number>) => [...m.values()].reduce((x, y) => x + y, 0);
    const started = (await Promise.all(["first", "second"].map((s) => ranByPid(`started:${s}`)))).map(total);
    console.log(`[cluster-hosts] handler runs finished by host (first / second): A ${first.get(a) ?? 0}/${second.get(a) ?? 0}, B ${first.get(b) ?? 0}/${second.get(b) ?? 0}, C ${first.get(c) ?? 0}/${second.get(c) ?? 0}; handler starts ${started[0]} / ${started[1]} for ${RUNS} runs (the excess: cut off by the kill, or reclaimed from A and run again)`);
    expect((first.get(c) ?? 0) + (second.get(c) ?? 0)).toBeGreaterThan(0);
    expect((first.get(a) ?? 0) + (second.get(a) ?? 0)).toBeGreaterThan(0);
    // A handler whose host died after it ran but before its commit runs again (at least once); its commit happens once (above).
    expect(total(first)).toBeGreaterThanOrEqual(RUNS);
    expect(total(second)).toBeGreaterThanOrEqual(RUNS);
  });

  it("/v1/stats of either live host counts the work of all hosts", async () => {
    const [, b, c] = named;
    const processed = async (h: Host) => {
      const stats = (await (await fetch(`${h.url}/v1/stats`)).json()) as { stages: Array<{ name: string; processed: number }> };
      return Object.fromEntries(stats.stages.map((s) => [s.name, s.processed]));
    };
    const [fromB, fromC] = await Promise.all([processed(b), processed(c)]).catch((err) => {
      throw new Error(`${(err as Error).message}\nB: ${b.output().slice(-2000)}\nC: ${c.output().slice(-2000)}`);
    });
    expect(fromB).toEqual(fromC);
    expect(fromB.second).toBeGreaterThanOrEqual(RUNS);
  });
});
