/**
 * Flow control across real `edgepipe start` processes (issue 14): two host
 * processes share one per-tenant concurrency limit of 2, on one server (where
 * a batch's commit frees its slots and readmits the next waiting entries) and
 * on a 3-master cluster (12 partitions: separate release calls and the
 * readmit loop); on the server one host is killed with kill -9 mid-run. Every
 * handler call records its process, start and end
 * (tests/fixtures/flow-limit-pipeline.ts): no tenant ever has more than 2 in
 * handlers, counted across both processes (a killed call ends at the kill),
 * every run completes, nothing is dead-lettered or left waiting, the killed
 * host's entries are run again by the other one, and no run still holds a
 * slot at the end (the dead host's leases were taken over and released).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { randomHex } from "../functions/envelope";
import { CLUSTER_KEY_DEFAULTS, createKeys } from "../functions/keys";
import { connectCluster, waitReady } from "../worker-host/data-store";
import { runStatuses } from "../worker-host/news/news-check";
import { connectValkey, type Connection } from "../worker-host/valkey";
import { startTestCluster, type TestCluster } from "./helpers/cluster";
import { eventually, startTestValkey, type TestValkey } from "./helpers/valkey";
import { nodeArgs } from "./helpers/node-entry";

const TENANTS = ["a", "b", "c"];
const EACH = 16;
const LIMIT = 2;

interface Host {
  child: ChildProcess;
  url: string;
  output: () => string;
  exited: Promise<number | null>;
}

const children: ChildProcess[] = [];
const stops: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  await Promise.allSettled(stops.map((s) => s()));
});

async function startHost(env: Record<string, string>): Promise<Host> {
  const child = spawn(process.execPath, nodeArgs("worker-host/cli.ts", ["start", "--pipeline", "tests/fixtures/flow-limit-pipeline.ts"]), {
    env: { ...process.env, VALKEY_URL: "", PORT: "0", DEMO: "off", WEB_DIR: "", BLOCK_MS: "200", BATCH_SIZE: "4", VISIBILITY_TIMEOUT_MS: "2000", WORK_MS: "60", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  const url = await eventually(() => /listening on (\S+)/.exec(out)?.[1], { timeoutMs: 90_000 }).catch((err) => {
    child.kill("SIGKILL");
    throw new Error(`${(err as Error).message}\n${out}`);
  });
  return { child, url, output: () => out, exited };
}

interface Call {
  run: string;
  pid: number;
  start: number;
  /** Undefined: cut off by the kill. */
  end?: number;
}

/** Every handler call of a tenant, from the fixture's hash. */
async function callsOf(conn: Connection, prefix: string, tenant: string): Promise<Call[]> {
  const flat = (await conn.hgetall(`${prefix}:calls:${tenant}`)) as Record<string, string>;
  const calls = new Map<string, Call>();
  for (const [field, value] of Object.entries(flat)) {
    const m = /^(.+):(\d+):([se])$/.exec(field);
    if (!m) continue;
    const id = `${m[1]}:${m[2]}`;
    const call = calls.get(id) ?? { run: m[1], pid: 0, start: 0 };
    if (m[3] === "s") {
      const [pid, start] = value.split(":").map(Number);
      call.pid = pid;
      call.start = start;
    } else call.end = Number(value.replace(/^t/, ""));
    calls.set(id, call);
  }
  return [...calls.values()];
}

/** Most calls in handlers at once ([start, end) intervals; a call cut off by the kill ends at `killedAt`). */
function mostAtOnce(calls: Call[], killedAt: number): number {
  const events: Array<[number, number]> = [];
  for (const c of calls) events.push([c.start, 1], [c.end ?? killedAt, -1]);
  // At the same millisecond an end comes before a start.
  events.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let now = 0;
  let most = 0;
  for (const [, d] of events) most = Math.max(most, (now += d));
  return most;
}

async function scenario({ where, kill }: { where: "server" | "cluster"; kill: boolean }) {
  const prefix = `fp${randomHex(3)}`;
  let conn: Connection;
  let env: Record<string, string>;
  let partitions = 1;
  if (where === "server") {
    const v: TestValkey = await startTestValkey();
    stops.push(() => v.stop());
    conn = connectValkey(v.url, { name: "flow-processes-test" });
    env = { VALKEY_URL: v.url, KEY_PREFIX: prefix };
  } else {
    const t: TestCluster = await startTestCluster({ masters: 3 });
    stops.push(() => t.stop());
    conn = connectCluster(t.cluster.startupNodes, { log: () => {} });
    await waitReady(conn, 10_000, "test cluster client");
    env = { VALKEY_CLUSTER_NODES: t.cluster.seedList, KEY_PREFIX: prefix };
    partitions = CLUSTER_KEY_DEFAULTS.partitions;
  }
  stops.push(async () => conn.disconnect());
  const keys = createKeys({ prefix, partitions, feedBuckets: where === "cluster" ? CLUSTER_KEY_DEFAULTS.feedBuckets : 16 });
  const [a, b] = await Promise.all([startHost(env), startHost(env)]);
  const payloads = TENANTS.flatMap((tenant) => Array.from({ length: EACH }, (_, n) => ({ tenant, n })));
  const res = await fetch(`${b.url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads }) });
  expect(res.status).toBe(202);
  const runIds = ((await res.json()) as { runIds: string[] }).runIds;
  const completed = async () => (await runStatuses(conn, keys, runIds)).filter((s) => s === "completed").length;
  let killedAt = Infinity;
  let cutOff: Call[] = [];
  if (kill) {
    // Kill -9 host A while it has handlers running (their slots and entries are left behind).
    const pidA = a.child.pid!;
    await eventually(
      async () => {
        const all = (await Promise.all(TENANTS.map((t) => callsOf(conn, prefix, t)))).flat();
        return all.some((c) => c.pid === pidA && c.end === undefined) && all.filter((c) => c.end !== undefined).length >= 6 ? true : undefined;
      },
      { timeoutMs: 60_000, stepMs: 5 },
    );
    a.child.kill("SIGKILL");
    killedAt = Date.now();
    await a.exited;
    cutOff = (await Promise.all(TENANTS.map((t) => callsOf(conn, prefix, t)))).flat().filter((c) => c.pid === pidA && c.end === undefined);
  }
  await eventually(async () => ((await completed()) === runIds.length ? true : undefined), { timeoutMs: 120_000, stepMs: 100 }).catch(async (err) => {
    throw new Error(`${(err as Error).message}: ${await completed()}/${runIds.length} completed\nA:\n${a.output().slice(-2000)}\nB:\n${b.output().slice(-2000)}`);
  });
  const stats = (await (await fetch(`${b.url}/v1/stats`)).json()) as { stages: Array<{ name: string; deadLettered: number; flow: { throttled: number; waiting: number; readmitted: number } }> };
  const calls = new Map(await Promise.all(TENANTS.map(async (t) => [t, await callsOf(conn, prefix, t)] as const)));
  // Slots still held by a run (reservation tokens "r:..." of the dead host may stay until their lease ends).
  // With several partitions a slot is freed by a flow-release call just after its commit: looked at until none is left (bounded).
  const heldNow = async () => (await Promise.all(TENANTS.map((t) => conn.zrange(keys.flowLimiter("work", "concurrency", t), 0, -1)))).flat().filter((m) => !m.startsWith("r:"));
  let held = await heldNow();
  for (let k = 0; k < 50 && held.length > 0; k++) {
    await new Promise((r) => setTimeout(r, 100));
    held = await heldNow();
  }
  return { a, b, runIds, stats: stats.stages.find((s) => s.name === "work")!, calls, cutOff, killedAt, held };
}

describe("flow control across host processes", () => {
  it("one server: two processes hold a per-tenant limit of 2 together; one killed with -9 mid-run, the other finishes its entries; no run is lost or holds a slot", async () => {
    const r = await scenario({ where: "server", kill: true });
    const pids = new Set([...r.calls.values()].flat().map((c) => c.pid));
    const most = TENANTS.map((t) => mostAtOnce(r.calls.get(t)!, r.killedAt));
    console.log(`[flow-processes] server: most in handlers per tenant ${most.join(", ")}; ${r.cutOff.length} call(s) cut off by the kill; throttled ${r.stats.flow.throttled}, readmitted ${r.stats.flow.readmitted}; processes that ran calls: ${pids.size}`);
    expect(pids.size).toBe(2);
    for (const m of most) expect(m).toBeLessThanOrEqual(LIMIT);
    expect(Math.max(...most)).toBe(LIMIT);
    expect(r.stats.deadLettered).toBe(0);
    expect(r.stats.flow.waiting).toBe(0);
    expect(r.stats.flow.throttled).toBeGreaterThan(0);
    // What the killed host had in hand ran again, in the other process.
    expect(r.cutOff.length).toBeGreaterThan(0);
    const pidB = r.b.child.pid!;
    for (const c of r.cutOff) expect([...r.calls.values()].flat().some((x) => x.run === c.run && x.pid === pidB && x.end !== undefined)).toBe(true);
    expect(r.held).toEqual([]);
  }, 240_000);

  it("3-master cluster: two processes hold a per-tenant limit of 2 together, every run completes, nothing waits or is dead-lettered", async () => {
    const r = await scenario({ where: "cluster", kill: false });
    const pids = new Set([...r.calls.values()].flat().map((c) => c.pid));
    const most = TENANTS.map((t) => mostAtOnce(r.calls.get(t)!, r.killedAt));
    console.log(`[flow-processes] cluster: most in handlers per tenant ${most.join(", ")}; throttled ${r.stats.flow.throttled}, readmitted ${r.stats.flow.readmitted}; processes that ran calls: ${pids.size}`);
    expect(pids.size).toBe(2);
    for (const m of most) expect(m).toBeLessThanOrEqual(LIMIT);
    expect(Math.max(...most)).toBe(LIMIT);
    expect(r.stats.deadLettered).toBe(0);
    expect(r.stats.flow.waiting).toBe(0);
    expect(r.stats.flow.throttled).toBeGreaterThan(0);
    expect(r.stats.flow.readmitted).toBe(r.stats.flow.throttled);
    expect(r.held).toEqual([]);
  }, 240_000);
});
