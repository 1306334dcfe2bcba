/**
 * Every lua/*.lua call site touches one slot (issue 13, item 3), checked with
 * the callers' own code paths and on a real 3-master cluster:
 *
 * - the worker-host (commits, retries, dead letters, reclaim, leases, trim,
 *   prune) runs the news pipeline and a failing pipeline on one server, with
 *   every script call recorded (keys and arguments as the host built them);
 * - the news handlers run against the cluster (their REDIS is an @upstash
 *   client whose test requester routes by key), so mint-feed-id, fan-out,
 *   set-interests and the tool cache run there for real; the exported
 *   functions that start runs, redrive, read stats, rate-limit and answer
 *   /health are called on the cluster too;
 * - every recorded call is then checked client-side (keySlot of every key,
 *   and fan-out's derived feed-key prefix) and replayed on the cluster as a
 *   `#!lua` script: unlike a plain EVAL, which may touch another slot of the
 *   same node unnoticed, a shebang script fails on any key outside its slot.
 *
 * A commit whose output carries another run's id (only an HTTP handler can
 * send one) would span two partitions: the stage worker dead-letters that
 * entry with the reason instead (pinned at the end).
 */
import { readFileSync, existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Redis as UpstashRedis } from "@upstash/redis";
import type { Command } from "iovalkey";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { settingsFor } from "../functions/config";
import { randomHex, type Envelope } from "../functions/envelope";
import { app as newsApp, pipeline as newsPipeline } from "../functions/news/index";
import { hashTag, keySlot } from "../functions/key-slot";
import { CLUSTER_KEY_DEFAULTS, createKeys, type Keys } from "../functions/keys";
import { LUA } from "../functions/lua.generated";
import { articlesFromCsv } from "../functions/news/csv";
import { generateDemoArticles } from "../functions/news/demo-feed";
import { seedDemoUsers } from "../functions/news/users";
import { z } from "zod";
import { definePipeline, defineStage, StageError, type Pipeline } from "../functions/pipeline";
import type { AppEnv, RedisClient } from "../functions/redis";
import { listRuns, startRuns } from "../functions/runs";
import { redriveDeadLetters } from "../functions/dead-letters";
import { promoteDue } from "../functions/delayed";
import { rerunRun } from "../functions/rerun";
import { readStats } from "../functions/stats";
import { cachedTool } from "../functions/tools/cache";
import { tryTakeToken } from "../functions/tools/rate-limit";
import { WorkerHost } from "../worker-host/host";
import { InProcessInvoker, type Invoker } from "../worker-host/invoker";
import { waitForRuns } from "../worker-host/news/news-check";
import type { Connection } from "../worker-host/valkey";
import { clusterRequester, startTestCluster, type TestCluster } from "./helpers/cluster";
import { countingPipeline, makeHost, singleStagePipeline } from "./helpers/pipelines";
import { eventually, startTestValkey, type TestValkey } from "./helpers/valkey";

type ScriptName = keyof typeof LUA;
interface ScriptCall {
  script: ScriptName;
  keys: string[];
  args: string[];
  /** "server": recorded on the single server (worker-host, ingest route); "cluster": ran on the cluster. */
  where: "server" | "cluster";
}

/** Where each script is called from (for the report). */
const CALLERS: Record<ScriptName, string> = {
  claimIdempotency: "functions/idempotency.ts idempotent (Idempotency-Key on POST /v1/runs, /v1/articles)",
  commitStage: "worker-host/stage-worker.ts commitPartition",
  deadLetter: "worker-host/stage-worker.ts deadLetter",
  enqueueRuns: "functions/runs.ts startRuns (POST /v1/runs, /v1/articles)",
  expireWaits: "functions/wait-for.ts expireWaits (worker-host/due-work.ts, the Workers cron)",
  extendLease: "worker-host/stage-worker.ts extendLeases",
  fanOut: "functions/news/fan-out.ts fanOutBucketCall",
  flowAcquire: "worker-host/flow-control.ts admit, readmitOnce",
  flowPark: "worker-host/flow-control.ts park",
  flowReadmit: "worker-host/flow-control.ts readmitOnce",
  flowReady: "worker-host/flow-control.ts readmitOnce",
  flowRelease: "worker-host/flow-control.ts giveBack, extendLeases",
  listRuns: "functions/runs.ts listRuns (GET /v1/runs)",
  mintFeedId: "functions/news/stages/fetcher.ts",
  promoteDue: "functions/delayed.ts promoteDue (worker-host/due-work.ts, the Workers cron)",
  parkRuns: "worker-host/park-runs.ts parkRuns (a handler's waitFor)",
  pruneConsumers: "worker-host/host.ts pruneConsumers",
  rateLimit: "functions/tools/rate-limit.ts tryTakeToken",
  reclaimIdle: "worker-host/stage-worker.ts reclaim loop",
  redriveDeadLetters: "functions/dead-letters.ts redriveDeadLetters",
  rerunRun: "functions/rerun.ts rerunRun (POST /v1/runs/:runId/rerun)",
  resumeRun: "functions/wait-for.ts resumeRun (POST /v1/runs/:runId/events/:event)",
  retryLater: "worker-host/stage-worker.ts retryLater",
  serverInfo: "functions/app.ts GET /health",
  setInterests: "functions/news/users.ts setInterests",
  streamBacklog: "functions/stats.ts readStats",
  trimStream: "worker-host/host.ts trimStreams",
};

const bySha = new Map<string, ScriptName>(Object.entries(LUA).map(([name, s]) => [s.sha, name as ScriptName]));
const bySource = new Map<string, ScriptName>(Object.entries(LUA).map(([name, s]) => [s.source, name as ScriptName]));

/** An EVALSHA/EVAL of one of lua/*.lua, or undefined for any other command. */
function scriptCall(name: string, args: ReadonlyArray<unknown>, where: ScriptCall["where"]): ScriptCall | undefined {
  const n = name.toLowerCase();
  if (n !== "evalsha" && n !== "eval") return undefined;
  const [first, numKeys, ...rest] = args.map(String);
  const script = n === "evalsha" ? bySha.get(first) : bySource.get(first);
  if (!script) return undefined;
  return { script, keys: rest.slice(0, Number(numKeys)), args: rest.slice(Number(numKeys)), where };
}

/** Records every script call sent over `conn` (the worker-host's and the in-process requester's alike). */
function recordScripts(conn: Connection, sink: ScriptCall[]): void {
  const send = conn.sendCommand.bind(conn);
  conn.sendCommand = ((command: Command, stream?: never) => {
    const call = scriptCall(command.name, command.args, "server");
    if (call) sink.push(call);
    return send(command, stream);
  }) as typeof conn.sendCommand;
}

/** `{p<N>}`-style shape of a key's tag, for the report. */
function tagShape(key: string): string {
  const tag = hashTag(key);
  if (tag === undefined) return "(no tag)";
  return `{${tag.replace(/^([pb])\d+(-\d+)?$/, "$1<N>").replace(/^fl:.*$/, "fl:<stage>")}}`;
}

const SLOT_ERROR = /CROSSSLOT|do not hash to the same slot|non local key|Too many Cluster redirections/;

// As in news-e2e: AG_NEWS_CSV overrides the path (a worktree's ../shared is not the project's).
const AG_NEWS = process.env.AG_NEWS_CSV ?? fileURLToPath(new URL("../../shared/data/ag_news_test.csv", import.meta.url));
function newsArticles(n: number) {
  if (existsSync(AG_NEWS)) return articlesFromCsv(readFileSync(AG_NEWS, "utf8")).slice(0, n).map((r) => ({ title: r.title, body: r.body, source: "ag_news" }));
  console.warn(`[cluster-scripts] ${AG_NEWS} is absent: using the demo generator`);
  return generateDemoArticles(n, { seed: 11 }).map(({ intendedTopic: _t, ...a }) => a);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let v: TestValkey;
let t: TestCluster;
let clusterRedis: RedisClient;
let newsKeys: Keys;
const calls: ScriptCall[] = [];

/** Creates every stage group on the cluster, so replays of host scripts find them. */
async function createGroups(keys: Keys, pipeline: Pipeline): Promise<void> {
  await Promise.all(
    [...pipeline.stages.keys()].flatMap((stage) =>
      keys.allPartitions.map((p) => t.client.xgroup("CREATE", keys.stream(stage, p), keys.group(stage), "0", "MKSTREAM").catch((e: Error) => void expect(e.message).toMatch(/BUSYGROUP/))),
    ),
  );
}

/** The news pipeline: host and ingest on the single server, handlers on the cluster. */
async function runNews(): Promise<void> {
  const base = { KEY_PREFIX: `a${randomHex(3)}`, PARTITIONS: String(CLUSTER_KEY_DEFAULTS.partitions), FEED_BUCKETS: String(CLUSTER_KEY_DEFAULTS.feedBuckets) };
  const handlerEnv: AppEnv = { ...base, REDIS: clusterRedis };
  const ingestEnv: AppEnv = { ...base, REDIS: v.redis };
  newsKeys = settingsFor(handlerEnv).keys;
  await seedDemoUsers(clusterRedis, newsKeys, 60);
  const host = new WorkerHost({
    pipeline: newsPipeline,
    keys: newsKeys,
    conn: v.conn,
    invoker: new InProcessInvoker(newsApp, handlerEnv),
    tuning: { blockMs: 100, visibilityMs: 2000, reclaimIntervalMs: 100 },
  });
  await host.run();
  const articles = newsArticles(120);
  const res = await newsApp.request("/v1/articles", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ articles }) }, ingestEnv);
  expect(res.status).toBe(202);
  const { runIds } = (await res.json()) as { runIds: string[] };
  const statuses = await waitForRuns(v.conn, newsKeys, runIds, { timeoutMs: 40_000 });
  expect(statuses.every((s) => s === "completed" || s === "skipped")).toBe(true);
  await host.trimStreams();
  await host.pruneConsumers();
  await host.close();
  await createGroups(newsKeys, newsPipeline);
}

/** Retries, dead letters (handler failures and a malformed entry), leases and a redrive, on the single server. */
async function runFailures(): Promise<void> {
  const keys = createKeys({ prefix: `f${randomHex(3)}`, partitions: CLUSTER_KEY_DEFAULTS.partitions });
  const pipeline = singleStagePipeline(async ({ n }) => {
    if (n % 4 === 0) throw new StageError("always fails"); // retried, then dead-lettered after maxDeliveries
    if (n % 4 === 1) throw new StageError("bad input", { retryable: false }); // dead-lettered at once
    if (n % 4 === 2) await sleep(300); // longer than a lease period: extend-lease
    return { n };
  });
  const { host, app, env } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis, tuning: { maxDeliveries: 3, visibilityMs: 400 } });
  await host.run();
  await startRuns(v.redis, Array.from({ length: 24 }, (_, n) => ({ n })), { keys, pipeline });
  await v.conn.xadd(keys.stream("only", 3), "*", "garbage", "1");
  const deadLetters = async () => (await Promise.all(keys.allPartitions.map((p) => v.conn.xlen(keys.deadLetters("only", p))))).reduce((a, b) => a + b, 0);
  // 6 that always fail, 6 failing for good, 1 malformed (a starved machine may add redeliveries past maxDeliveries).
  await eventually(async () => (await deadLetters()) >= 13, { timeoutMs: 20_000 });
  await host.close();
  const total = await deadLetters();
  const res = await app.request("/v1/dead-letters/redrive", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ stage: "only" }) }, env);
  expect(((await res.json()) as { redriven: number }).redriven).toBe(total);
  await createGroups(keys, pipeline);
}

/** Flow control (concurrency, rate limit, budget, priority lanes: parks, readmits, releases, leases) on the single server, 12 partitions. */
async function runFlow(): Promise<void> {
  const keys = createKeys({ prefix: `l${randomHex(3)}`, partitions: CLUSTER_KEY_DEFAULTS.partitions });
  const limited = defineStage({
    name: "limited",
    input: z.object({ tenant: z.string(), n: z.number() }),
    next: [],
    concurrency: { key: (p) => p.tenant, limit: 1 },
    rateLimit: { key: (p) => p.tenant, perSecond: 50, burst: 2 },
    budget: { key: (p) => p.tenant, tokensPerMinute: 60_000, estimate: () => 20 },
    lanes: { limit: 2 },
    handle: async ({ n }, ctx) => {
      await sleep(n % 3 === 0 ? 250 : 5); // some outlast a lease period: flow leases are extended
      ctx.reportCost(10);
      return { result: { n } };
    },
  });
  const pipeline = definePipeline({ name: "flow", stages: [limited] });
  const { host } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis, tuning: { visibilityMs: 400 } });
  await host.run();
  const runIds = [
    ...(await startRuns(v.redis, Array.from({ length: 30 }, (_, n) => ({ tenant: `t${n % 3}`, n })), { keys, pipeline, priority: "low" })),
    ...(await startRuns(v.redis, Array.from({ length: 6 }, (_, n) => ({ tenant: `t${n % 3}`, n })), { keys, pipeline, priority: "high" })),
  ];
  await eventually(async () => (await Promise.all(runIds.map((id) => v.conn.hget(keys.run(id), "status")))).every((s) => s === "completed"), { timeoutMs: 30_000 });
  await host.close();
  await createGroups(keys, pipeline);
}

/** Runs that wait for an event (parked, resumed by an event, timed out), on the single server. */
async function runWaits(): Promise<void> {
  const keys = createKeys({ prefix: `w${randomHex(3)}`, partitions: CLUSTER_KEY_DEFAULTS.partitions });
  const Payload = z.object({ n: z.number().int() });
  const ask = defineStage({ name: "ask", input: Payload, next: ["done", "late"], handle: ({ n }) => ({ waitFor: { event: "approved", timeoutMs: n % 2 === 0 ? 60_000 : 50, onTimeout: "late" } }) });
  const done = defineStage({ name: "done", input: z.unknown(), next: [], handle: () => ({}) });
  const late = defineStage({ name: "late", input: z.unknown(), next: [], handle: () => ({}) });
  const pipeline = definePipeline({ name: "waits", stages: [ask, done, late] });
  const { host, app, env } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis });
  await host.run();
  const runIds = await startRuns(v.redis, Array.from({ length: 24 }, (_, n) => ({ n })), { keys, pipeline });
  const status = (id: string) => v.conn.hget(keys.run(id), "status");
  await eventually(async () => (await Promise.all(runIds.map(status))).every((s) => s === "waiting" || s === "completed"), { timeoutMs: 20_000 });
  for (const id of runIds.filter((_, n) => n % 2 === 0)) {
    const res = await app.request(`/v1/runs/${id}/events/approved`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ data: { ok: true } }) }, env);
    expect(res.status).toBe(202);
  }
  await eventually(async () => (await Promise.all(runIds.map(status))).every((s) => s === "completed"), { timeoutMs: 20_000 });
  await host.close();
  await createGroups(keys, pipeline);
}

/** The exported functions that are not on the news handlers' path, called on the cluster. */
async function runOnCluster(): Promise<void> {
  await startRuns(clusterRedis, Array.from({ length: 40 }, (_, n) => ({ title: `t${n}`, body: "b" })), { keys: newsKeys, pipeline: newsPipeline });
  await startRuns(clusterRedis, Array.from({ length: 24 }, (_, n) => ({ title: `d${n}`, body: "b" })), { keys: newsKeys, pipeline: newsPipeline, runAt: Date.now() + 50 });
  await sleep(60);
  expect((await promoteDue(clusterRedis, newsKeys)).moved).toBe(24);
  const clusterEnv = { REDIS: clusterRedis, KEY_PREFIX: newsKeys.prefix, PARTITIONS: String(newsKeys.partitions), FEED_BUCKETS: String(newsKeys.feedBuckets) };
  const started = await startRuns(clusterRedis, Array.from({ length: 12 }, (_, n) => ({ title: `r${n}`, body: "b" })), { keys: newsKeys, pipeline: newsPipeline });
  for (const runId of started) expect((await rerunRun(clusterRedis, newsKeys, newsPipeline, { runId, fromStep: "fetcher", hasPayload: false })).ok).toBe(true);
  for (const key of ["k1", "k2", "k3", "k1"]) {
    const res = await newsApp.request("/v1/runs", { method: "POST", headers: { "content-type": "application/json", "idempotency-key": key }, body: JSON.stringify({ payloads: [{ title: "t", body: "b" }] }) }, clusterEnv);
    expect(res.status).toBe(202);
  }
  await redriveDeadLetters(clusterRedis, newsKeys, { stage: "fetcher" });
  await readStats(clusterRedis, newsKeys, newsPipeline);
  await listRuns(clusterRedis, newsKeys, { limit: 10, status: "running" });
  await tryTakeToken(clusterRedis, newsKeys, "llm", { burst: 5, perSecond: 1 });
  await Promise.all(Array.from({ length: 3 }, () => cachedTool(clusterRedis, newsKeys, { tool: "summarize", args: { x: 1 }, ttlSeconds: 60, fn: async () => "s" })));
  const health = await newsApp.request("/health", {}, { REDIS: clusterRedis });
  expect(health.status).toBe(200);
}

beforeAll(async () => {
  [v, t] = await Promise.all([startTestValkey(), startTestCluster({ masters: 3 })]);
  recordScripts(v.conn, calls);
  clusterRedis = new UpstashRedis(
    clusterRequester(t.client, {
      onCommand: (name, args) => {
        const call = scriptCall(name, args, "cluster");
        if (call) calls.push(call);
      },
    }),
  ) as unknown as RedisClient;
  await runNews();
  await runFailures();
  await runFlow();
  await runWaits();
  await runOnCluster();
}, 180_000);

afterAll(async () => {
  await Promise.allSettled([v?.stop(), t?.stop()]);
});

describe("every script call touches one slot", () => {
  it("every script in lua/ was called by its real caller", () => {
    const called = new Set(calls.map((c) => c.script));
    expect(Object.keys(LUA).filter((name) => !called.has(name as ScriptName))).toEqual([]);
  });

  it("every recorded call's keys (and fan-out's derived feed keys) share one slot", () => {
    const off: string[] = [];
    for (const c of calls) {
      const slots = new Set(c.keys.map(keySlot));
      // fan-out derives each subscriber's feed key as ARGV[1] .. uid.
      if (c.script === "fanOut") slots.add(keySlot(`${c.args[0]}u0001`));
      if (slots.size > 1) off.push(`${c.script}: ${c.keys.join(" ")}`);
    }
    expect(off).toEqual([]);
  });

  it("replayed on the cluster as strict (#!lua) scripts, no call is refused for its slots", async () => {
    // Up to 25 calls per script, with as many different first-key slots as there are.
    const chosen = new Map<ScriptName, ScriptCall[]>();
    for (const c of calls) {
      const list = chosen.get(c.script) ?? [];
      if (list.length < 25 && !list.some((x) => c.keys.length > 0 && x.keys[0] === c.keys[0])) list.push(c);
      chosen.set(c.script, list);
    }
    const slotErrors: string[] = [];
    const clean = new Map<ScriptName, number>();
    const otherErrors = new Map<string, number>();
    for (const [script, list] of chosen) {
      await Promise.all(
        list.map(async (c) => {
          // A fresh marker in the same slot, so fan-out does deliver (and derive feed keys) again.
          const keys = script === "fanOut" ? c.keys.map((k, i) => (i % 2 === 1 ? `${k}:replay` : k)) : c.keys;
          try {
            await t.client.eval(`#!lua\n${LUA[script].source}`, keys.length, ...keys, ...c.args);
            clean.set(script, (clean.get(script) ?? 0) + 1);
          } catch (err) {
            const message = (err as Error).message;
            if (SLOT_ERROR.test(message)) slotErrors.push(`${script} (${CALLERS[script]}): ${message} keys ${keys.join(" ")}`);
            else otherErrors.set(`${script}: ${message.slice(0, 80)}`, (otherErrors.get(`${script}: ${message.slice(0, 80)}`) ?? 0) + 1);
          }
        }),
      );
    }
    expect(slotErrors).toEqual([]);
    // Every script ran through at least once, so the replays reached their key accesses.
    expect(Object.keys(LUA).filter((name) => !clean.get(name as ScriptName))).toEqual([]);

    const rows = (Object.keys(LUA) as ScriptName[]).map((name) => {
      // An EVALSHA answered NOSCRIPT and its EVAL are one call.
      const mine = [...new Map(calls.filter((c) => c.script === name).map((c) => [JSON.stringify([c.keys, c.args]), c])).values()];
      const shapes = [...new Set(mine.flatMap((c) => c.keys.map(tagShape)))].join(" ") || "(no keys)";
      const where = [...new Set(mine.map((c) => c.where))].join("+");
      return `  ${name.padEnd(19)} ${String(mine.length).padStart(5)} calls (${where.padEnd(14)}) tags ${shapes.padEnd(10)} strict replays ok ${clean.get(name) ?? 0}/${chosen.get(name)?.length ?? 0}  <- ${CALLERS[name]}`;
    });
    console.log(`[cluster-scripts] script calls on ${t.cluster.binary.flavor} ${t.cluster.binary.version}, 3 masters:\n${rows.join("\n")}${otherErrors.size ? `\n  other replay errors: ${[...otherErrors].map(([m, n]) => `${n}x ${m}`).join("; ")}` : ""}`);
  });

  it("the news handlers' data lands on every master, partitions and buckets 4/4/4 and 8/8/8", async () => {
    const perMaster = await Promise.all(t.client.nodes("master").map((n) => n.dbsize()));
    expect(perMaster.every((n) => n > 0)).toBe(true);
    const owner = (key: string) => t.client.slots[keySlot(key)][0];
    const count = (keys: string[]) => [...keys.reduce((m, k) => m.set(owner(k), (m.get(owner(k)) ?? 0) + 1), new Map<string, number>()).values()].sort();
    expect(count(newsKeys.allPartitions.map((p) => newsKeys.stream("fetcher", p)))).toEqual([4, 4, 4]);
    expect(count(newsKeys.allBuckets.map((b) => newsKeys.feedKeyPrefix(b)))).toEqual([8, 8, 8]);
    console.log(`[cluster-scripts] keys per master after the news run: ${perMaster.join(" / ")}`);
  });
});

describe("a commit whose output belongs to another partition", () => {
  it("is not committed across slots: the entry is dead-lettered with the reason, its run marked, the commit never sent", async () => {
    const keys = createKeys({ prefix: `g${randomHex(3)}`, partitions: CLUSTER_KEY_DEFAULTS.partitions });
    const pipeline = countingPipeline();
    // An invoker standing in for a remote handler that answers with an output for another run.
    const foreign: Invoker = {
      async invoke(_stage, envelopes: Envelope[]) {
        return envelopes.map((e) => {
          let other = "other-0";
          for (let i = 1; keys.partitionOf(other) === keys.partitionOf(e.runId); i++) other = `other-${i}`;
          return { ok: true as const, status: "completed" as const, ms: 1, outputs: [{ ...e, runId: other, stage: "second", attempt: 1 }] };
        });
      },
    };
    const sink: ScriptCall[] = [];
    const conn = v.connect();
    recordScripts(conn, sink);
    const { host } = makeHost({ pipeline, keys, conn, redis: v.redis, invoker: foreign, tuning: {} });
    await host.run();
    const [runId] = await startRuns(v.redis, [{ n: 1 }], { keys, pipeline });
    const p = keys.partitionOf(runId);
    const dead = await eventually(async () => (await v.conn.xrange(keys.deadLetters("first", p), "-", "+"))[0]);
    await host.close();
    expect(sink.filter((c) => c.script === "commitStage")).toEqual([]);
    const deadCall = sink.find((c) => c.script === "deadLetter")!;
    expect(new Set(deadCall.keys.map(keySlot)).size).toBe(1);
    expect(dead[1].join(" ")).toMatch(/cannot be committed with run .* one commit touches one partition/);
    expect(await v.conn.hget(keys.run(runId), "status")).toBe("dead-lettered");
  });
});
