/**
 * Flow control of stages (issue 14) against a real server: per-key
 * concurrency that is fair across keys (a flooding tenant does not hold the
 * others back, waiting entries spend no delivery attempt and are never
 * dead-lettered), slot leases that expire (a host that died holding a slot
 * leaks it only until its deadline), slots freed by the batch's commit on
 * one partition, and the flow key sanitizer.
 */
import type { Command } from "iovalkey";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { fnv1a, flowKeyPart } from "../functions/keys";
import { LUA } from "../functions/lua.generated";
import { definePipeline, defineStage } from "../functions/pipeline";
import { startRuns } from "../functions/runs";
import { readStats, renderPrometheus } from "../functions/stats";
import { runScript, upstashOverValkey } from "../worker-host/valkey";
import { fairnessScenario, prioritiesScenario, rateScenario } from "../bench/flow-scenarios";
import { makeHost } from "./helpers/pipelines";
import { eventually, startTestValkey, testKeys, type TestValkey } from "./helpers/valkey";

let v: TestValkey;
beforeAll(async () => {
  v = await startTestValkey();
});
afterAll(async () => {
  await v?.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("per-key concurrency", () => {
  it("lets nine small tenants finish long before a flooding one, 2 at a time per tenant, with no attempt lost and nothing dead-lettered", async () => {
    const keys = testKeys();
    const r = await fairnessScenario({ conns: [v.conn], keys, flood: 300, tenants: 9, each: 20, handlerMs: 20, tuning: { blockMs: 200, visibilityMs: 2000, reclaimIntervalMs: 100 }, timeoutMs: 90_000 });
    const flood = r.tenants.find((t) => t.tenant === "flood")!;
    const small = r.tenants.filter((t) => t.tenant !== "flood");
    console.log(`[flow] fairness (reduced): flood ${flood.entries} p99 ${flood.p99Ms} ms last ${flood.lastMs} ms; small tenants p99 ${small.map((t) => `${t.tenant}=${t.p99Ms}`).join(" ")} ms; throttled ${r.stats.flow.throttled}`);
    expect(small).toHaveLength(9);
    for (const t of r.tenants) expect(t.maxInHandlers).toBeLessThanOrEqual(2);
    expect(flood.maxInHandlers).toBe(2);
    // 300 flood entries at 2 x 20 ms take >= 3 s; each small tenant's 20 take ~0.2 s once read.
    for (const t of small) {
      expect(t.entries).toBe(20);
      expect(t.lastMs).toBeLessThan(flood.p50Ms);
    }
    expect(r.calls).toBe(300 + 9 * 20);
    expect(r.attemptsAbove1).toBe(0);
    expect(r.stats.deadLettered).toBe(0);
    expect(r.stats.retried).toBe(0);
    expect(r.stats.processed).toBe(300 + 9 * 20);
    expect(r.stats.flow.throttled).toBeGreaterThan(0);
    expect(r.stats.flow.waiting).toBe(0);
    expect(r.stats.flow.readmitted).toBe(r.stats.flow.throttled);
  });

  it("frees a slot held by a host that died only when its lease ends", async () => {
    const keys = testKeys();
    const started: number[] = [];
    const only = defineStage({
      name: "only",
      input: z.object({ tenant: z.string() }),
      next: [],
      concurrency: { key: (p) => p.tenant, limit: 1 },
      handle: async () => {
        started.push(Date.now());
        return { result: {} };
      },
    });
    const pipeline = definePipeline({ name: "lease", stages: [only] });
    // A host that died after its commit, before releasing: its slot lease runs 1.5 s from now.
    const died = Date.now();
    await runScript(v.conn, "flowAcquire", [keys.flowLimiter("only", "concurrency", "acme")], ["concurrency", died, 1, 1500, 0, 0, 1, 1, 1, "dead-run", 1, ""]);
    const { host } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis, tuning: { visibilityMs: 1500 } });
    await host.run();
    try {
      await startRuns(v.redis, [{ tenant: "acme" }, { tenant: "acme" }, { tenant: "other" }], { keys, pipeline });
      // While the lease holds, both acme entries wait: `waiting` in /v1/stats and /metrics (durable.parked is another count).
      const waiting = await eventually(async () => {
        const stats = await readStats(v.redis, keys, pipeline);
        return stats.stages[0].flow.waiting === 2 && Date.now() < died + 1400 ? stats : undefined;
      }, { timeoutMs: 1400 });
      expect(waiting.durable.parked).toBe(0);
      expect(renderPrometheus(waiting)).toContain('edgepipe_stage_flow_waiting{stage="only"} 2');
      await eventually(() => started.length === 3, { timeoutMs: 15_000 });
      const stats = (await readStats(v.redis, keys, pipeline)).stages[0];
      // "other" ran at once; both acme entries waited for the dead host's lease.
      expect(started.filter((t) => t >= died + 1400).length).toBeGreaterThanOrEqual(2);
      expect(stats.flow.throttled).toBeGreaterThanOrEqual(2);
      expect(stats.deadLettered).toBe(0);
      expect(stats.flow.waiting).toBe(0);
    } finally {
      await host.close();
    }
  });

  it.each([1, 4])("with %i partition(s), frees every slot after its batch: in the commit itself when the limiters share its slot, else with one flow-release call", async (partitions) => {
    const keys = testKeys(partitions);
    const conn = v.connect();
    const calls: string[] = [];
    const bySha = new Map<string, string>(Object.entries(LUA).map(([name, s]) => [s.sha, name]));
    const send = conn.sendCommand.bind(conn);
    conn.sendCommand = ((command: Command, stream?: never) => {
      if (command.name === "evalsha") {
        const name = bySha.get(String(command.args[0]));
        const op = name === "flowRelease" ? `:${String(command.args[2 + Number(command.args[1])])}` : "";
        if (name) calls.push(`${name}${op}`);
      }
      return send(command, stream);
    }) as typeof conn.sendCommand;
    const running = new Map<string, number>();
    let most = 0;
    const only = defineStage({
      name: "only",
      input: z.object({ tenant: z.string() }),
      next: [],
      concurrency: { key: (p) => p.tenant, limit: 1000 },
      handle: async ({ tenant }) => {
        running.set(tenant, (running.get(tenant) ?? 0) + 1);
        most = Math.max(most, running.get(tenant)!);
        await sleep(2);
        running.set(tenant, running.get(tenant)! - 1);
        return { result: {} };
      },
    });
    const pipeline = definePipeline({ name: "fold", stages: [only] });
    const { host } = makeHost({ pipeline, keys, conn, redis: upstashOverValkey(conn) });
    await host.run();
    try {
      const runIds = await startRuns(v.redis, Array.from({ length: 200 }, (_, n) => ({ tenant: `t${n % 4}` })), { keys, pipeline });
      await eventually(async () => (await Promise.all(runIds.map((id) => v.conn.hget(keys.run(id), "status")))).every((s) => s === "completed"), { timeoutMs: 30_000 });
      // Every slot was given back: no limiter holds a member.
      for (let t = 0; t < 4; t++) expect(await v.conn.zcard(keys.flowLimiter("only", "concurrency", `t${t}`))).toBe(0);
      const commits = calls.filter((c) => c === "commitStage").length;
      const releases = calls.filter((c) => c === "flowRelease:release").length;
      expect(commits).toBeGreaterThan(0);
      expect(calls.filter((c) => c === "flowAcquire").length).toBeGreaterThan(0);
      if (partitions === 1) expect(releases).toBe(0);
      else expect(releases).toBeGreaterThanOrEqual(1);
      expect(most).toBeGreaterThan(0);
    } finally {
      await host.close();
    }
  });

  it("readmits a waiting key's next entries in the commit that frees its slots (one partition), still 2 at a time, no attempt lost", async () => {
    const keys = testKeys(1);
    const conn = v.connect();
    const commitSha = LUA.commitStage.sha;
    let readmittedInCommits = 0;
    const send = conn.sendCommand.bind(conn);
    conn.sendCommand = ((command: Command, stream?: never) => {
      const out = send(command, stream);
      if (command.name === "evalsha" && String(command.args[0]) === commitSha) {
        void (command.promise as Promise<unknown[]>).then((reply) => (readmittedInCommits += Number(reply?.[3] ?? 0)), () => undefined);
      }
      return out;
    }) as typeof conn.sendCommand;
    let inHandlers = 0;
    let most = 0;
    let attemptsAbove1 = 0;
    const only = defineStage({
      name: "only",
      input: z.object({ tenant: z.string() }),
      next: [],
      concurrency: { key: (p) => p.tenant, limit: 2 },
      handle: async (_p, ctx) => {
        if (ctx.attempt !== 1) attemptsAbove1++;
        most = Math.max(most, ++inHandlers);
        await sleep(5);
        inHandlers--;
        return { result: {} };
      },
    });
    const pipeline = definePipeline({ name: "prompt", stages: [only] });
    const { host } = makeHost({ pipeline, keys, conn, redis: upstashOverValkey(conn) });
    await host.run();
    try {
      const runIds = await startRuns(v.redis, Array.from({ length: 60 }, () => ({ tenant: "flood" })), { keys, pipeline });
      await eventually(async () => (await Promise.all(runIds.map((id) => v.conn.hget(keys.run(id), "status")))).every((s) => s === "completed"), { timeoutMs: 60_000 });
      const stats = (await readStats(v.redis, keys, pipeline)).stages[0];
      console.log(`[flow] prompt readmission: ${stats.flow.readmitted} readmitted, ${readmittedInCommits} of them by the commit that freed the slot`);
      expect(most).toBeLessThanOrEqual(2);
      expect(attemptsAbove1).toBe(0);
      expect(stats.flow.waiting).toBe(0);
      expect(stats.flow.readmitted).toBeGreaterThanOrEqual(50);
      // Most readmissions ride on the commit (the readmit loop takes the rest, e.g. the first ones after parking).
      expect(readmittedInCommits).toBeGreaterThan(stats.flow.readmitted / 2);
    } finally {
      await host.close();
    }
  });

  it("one partition, every limit at once (concurrency, rate, budget, lanes): commits free and readmit, every run completes, 1 at a time per tenant, no slot left", async () => {
    const keys = testKeys(1);
    const running = new Map<string, number>();
    let most = 0;
    let attemptsAbove1 = 0;
    const limited = defineStage({
      name: "limited",
      input: z.object({ tenant: z.string(), n: z.number() }),
      next: [],
      concurrency: { key: (p) => p.tenant, limit: 1 },
      rateLimit: { key: (p) => p.tenant, perSecond: 50, burst: 2 },
      budget: { key: (p) => p.tenant, tokensPerMinute: 60_000, estimate: () => 20 },
      lanes: { limit: 2 },
      handle: async ({ tenant, n }, ctx) => {
        if (ctx.attempt !== 1) attemptsAbove1++;
        running.set(tenant, (running.get(tenant) ?? 0) + 1);
        most = Math.max(most, running.get(tenant)!);
        await sleep(n % 3 === 0 ? 30 : 5);
        running.set(tenant, running.get(tenant)! - 1);
        ctx.reportCost(10);
        return { result: { n } };
      },
    });
    const pipeline = definePipeline({ name: "all-limits", stages: [limited] });
    const { host } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis });
    await host.run();
    try {
      const runIds = [
        ...(await startRuns(v.redis, Array.from({ length: 30 }, (_, n) => ({ tenant: `t${n % 3}`, n })), { keys, pipeline, priority: "low" })),
        ...(await startRuns(v.redis, Array.from({ length: 6 }, (_, n) => ({ tenant: `t${n % 3}`, n })), { keys, pipeline, priority: "high" })),
      ];
      await eventually(async () => (await Promise.all(runIds.map((id) => v.conn.hget(keys.run(id), "status")))).every((s) => s === "completed"), { timeoutMs: 60_000 });
      const stats = (await readStats(v.redis, keys, pipeline)).stages[0];
      expect(most).toBe(1);
      expect(attemptsAbove1).toBe(0);
      expect(stats.deadLettered).toBe(0);
      expect(stats.flow.throttled).toBeGreaterThan(0);
      expect(stats.flow.waiting).toBe(0);
      expect(stats.flow.readmitted).toBe(stats.flow.throttled);
      // No run holds a concurrency or lane slot (reservation tokens "r:..." may outlive a readmitted entry another limit parked).
      const held = (await Promise.all([0, 1, 2].map((t) => v.conn.zrange(keys.flowLimiter("limited", "concurrency", `t${t}`), 0, -1)))).flat();
      const lanes = await v.conn.zrange(keys.flowLimiter("limited", "lanes", "all"), 0, -1);
      expect([...held, ...lanes].filter((m) => !m.startsWith("r:"))).toEqual([]);
    } finally {
      await host.close();
    }
  });

  it("keeps plain flow keys and hashes the rest", () => {
    expect(flowKeyPart("tenant-42")).toBe("tenant-42");
    expect(flowKeyPart("a}b{c")).toBe(`~${fnv1a("a}b{c").toString(16)}`);
    expect(flowKeyPart("x".repeat(65))).toMatch(/^~[0-9a-f]+$/);
    // A key part is its own part: readmission rebuilds limiter keys from it.
    expect(flowKeyPart(flowKeyPart("a}b{c"))).toBe(flowKeyPart("a}b{c"));
  });
});

describe("per-key rate limit and token budget on two hosts at once", () => {
  for (const kind of ["rate", "budget"] as const) {
    it(`holds each key to its ${kind === "rate" ? "rate" : "budget (estimated at twice the reported cost: the correction after the call counts)"} over a 5 s window, shared by both hosts`, async () => {
      const keys = testKeys();
      const conns = [v.connect(), v.connect()];
      const figures = await rateScenario({ conns, keys, kind, perSecond: 20, seconds: 5, warmupS: 1, keyCount: 2, tuning: { blockMs: 200, visibilityMs: 2000, reclaimIntervalMs: 100 } });
      console.log(`[flow] ${kind} (reduced, 5 s, 2 hosts): ${figures.map((f) => `${f.key} ${f.measured}/s of ${f.limit}/s (${(f.error * 100).toFixed(1)}%, per host ${f.perHost.join("+")})`).join("; ")}`);
      expect(figures).toHaveLength(2);
      for (const f of figures) {
        // A 5 s window: the burst (1 s worth) bounds the excess; a loaded machine may fall short. Unlimited would be many times over, no budget correction -50%.
        expect(f.error).toBeLessThan(0.25);
        expect(f.error).toBeGreaterThan(-0.25);
      }
      // Both hosts took part. Which host serves a key can lock into a pattern on a quiet machine (the server
      // hands each entry to the consumer blocked longest; one run gave k0 99+0, k1 0+100), so this is over
      // the keys; the 60 s `npm run flow:rate` reports each key's split between the hosts.
      expect([0, 1].map((h) => figures.reduce((n, f) => n + f.perHost[h], 0)).every((n) => n > 0)).toBe(true);
    });
  }
});

describe("priority lanes", () => {
  it("under a full low-priority backlog, high-priority runs finish first while low ones still progress at about 1:8", async () => {
    const keys = testKeys();
    const r = await prioritiesScenario({ conns: [v.conn], keys, low: 400, high: 80, limit: 4, handlerMs: 10, tuning: { blockMs: 200, visibilityMs: 2000, reclaimIntervalMs: 100 }, timeoutMs: 120_000 });
    console.log(`[flow] priorities (reduced): ${JSON.stringify(r)}`);
    expect(r.lastHighMs).toBeLessThan(r.lastLowMs);
    expect(r.duringHigh.high).toBe(80);
    // Low keeps moving while high waits, near the stated 1:8 (bounds wide for a loaded machine).
    expect(r.duringHigh.low).toBeGreaterThan(0);
    expect(r.ratio).toBeGreaterThan(r.statedRatio / 3);
    expect(r.ratio).toBeLessThan(r.statedRatio * 3);
  });
});

void sleep;
void upstashOverValkey;
