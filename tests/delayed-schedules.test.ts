/**
 * Delayed runs and cron schedules (issue 15 item 2) on a real server with two
 * worker-hosts: a delayed run waits in its partition's delayed set and starts
 * once when due (never before); cron ticks fire exactly once across both
 * hosts (here on a clock 60x faster than real time, so a minute tick comes
 * every second: `npm run soak:schedules` runs the real-time 10-minute
 * version); a missed tick is caught up once.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createApp } from "../functions/app";
import { definePipeline, defineStage } from "../functions/pipeline";
import { readRun } from "../functions/runs";
import { fireSchedules, scheduleRunId } from "../functions/schedules";
import { WorkerHost } from "../worker-host/host";
import { InProcessInvoker } from "../worker-host/invoker";
import { countingPipeline } from "./helpers/pipelines";
import { eventually, startTestValkey, testKeys, type TestValkey } from "./helpers/valkey";

let v: TestValkey;
beforeAll(async () => {
  v = await startTestValkey();
});
afterAll(async () => {
  await v?.stop();
});

const tuning = { blockMs: 100, visibilityMs: 2000, reclaimIntervalMs: 200 };

describe("delayed runs", () => {
  it("delayMs and runAt hold runs until due; each starts once, not before its time; a past runAt starts now", async () => {
    const keys = testKeys(3);
    const pipeline = countingPipeline();
    const app = createApp({ pipeline });
    const env = { REDIS: v.redis, KEY_PREFIX: keys.prefix, PARTITIONS: "3" };
    const hosts = [0, 1].map((i) => new WorkerHost({ pipeline, keys, conn: i === 0 ? v.conn : v.connect(), invoker: new InProcessInvoker(app, env), tuning, duePollMs: 100 }));
    await Promise.all(hosts.map((h) => h.run()));
    try {
      const post = async (body: unknown) => {
        const res = await app.request("/v1/runs", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }, env);
        return { status: res.status, body: (await res.json()) as { runIds: string[]; runAt?: string; error?: { message: string } } };
      };
      const posted = Date.now();
      const delayed = await post({ payloads: Array.from({ length: 20 }, (_, n) => ({ n })), delayMs: 4000 });
      expect(delayed.status).toBe(202);
      const due = Date.parse(delayed.body.runAt!);
      expect(due).toBeGreaterThanOrEqual(posted + 4000);
      expect((await readRun(v.redis, keys, pipeline, delayed.body.runIds[0]))?.status).toBe("delayed");
      const at = await post({ payloads: [{ n: 100 }], runAt: new Date(Date.now() + 1000).toISOString() });
      const past = await post({ payloads: [{ n: 200 }], runAt: Date.now() - 60_000 });
      expect(past.body.runAt).toBeUndefined();
      expect((await post({ payloads: [{ n: 1 }], delayMs: 10, runAt: Date.now() })).status).toBe(400);

      const runs = [...delayed.body.runIds, ...at.body.runIds, ...past.body.runIds];
      const done = await eventually(async () => {
        const all = await Promise.all(runs.map((id) => readRun(v.redis, keys, pipeline, id)));
        return all.every((r) => r?.status === "completed") ? all : null;
      });
      // Each started once (one `enqueued` entry), never before its due time; lateness as the promote script logged it.
      const late: number[] = [];
      for (const run of done.slice(0, 21)) {
        const starts = run!.log.filter((e) => e.event === "enqueued");
        expect(starts).toHaveLength(1);
        const dueAt = Number(starts[0].dueAt);
        expect(starts[0].at).toBeGreaterThanOrEqual(dueAt);
        expect(run!.steps.find((s) => s.stage === "first")!.at!).toBeGreaterThanOrEqual(dueAt);
        late.push(Number(starts[0].lateMs));
      }
      expect(await v.redis.hgetall(`${keys.prefix}:calls:second`)).toEqual(Object.fromEntries([...Array.from({ length: 20 }, (_, n) => [String(n), 1]), ["100", 1], ["200", 1]]));
      const promoted = hosts.reduce((s, h) => s + h.due!.figures.promoted, 0);
      expect(promoted).toBe(21);
      console.log(`[delayed] 21 delayed runs over 2 hosts (DUE_POLL_MS 100): started ${Math.max(...late)} ms after their time at most (median ${late.sort((a, b) => a - b)[10]} ms); promoted by host 1/2: ${hosts.map((h) => h.due!.figures.promoted).join("/")}`);
    } finally {
      await Promise.all(hosts.map((h) => h.close()));
    }
  }, 60_000);
});

describe("cron schedules", () => {
  function tickPipeline(keysPrefix: () => string) {
    const tick = defineStage({
      name: "tick",
      input: z.object({ schedule: z.string(), tick: z.string() }),
      next: [],
      handle: async ({ tick }, { redis }) => {
        await redis.hincrby(`${keysPrefix()}:ticks`, tick, 1);
        return { result: { tick } };
      },
    });
    return definePipeline({ name: "cron", stages: [tick], schedules: [{ name: "every-minute", cron: "* * * * *" }, { name: "every-5", cron: "*/5 * * * *" }] });
  }

  it("two hosts on a 60x clock: every tick fires exactly once and its run completes", async () => {
    const keys = testKeys(2);
    const pipeline = tickPipeline(() => keys.prefix);
    const app = createApp({ pipeline });
    const env = { REDIS: v.redis, KEY_PREFIX: keys.prefix, PARTITIONS: "2" };
    // A common virtual clock: one real second is one minute.
    const origin = Date.now();
    const clock = () => origin + (Date.now() - origin) * 60;
    const hosts = [0, 1].map((i) => new WorkerHost({ pipeline, keys, conn: i === 0 ? v.conn : v.connect(), invoker: new InProcessInvoker(app, env), tuning, duePollMs: 50, dueClock: clock }));
    const startedAt = clock();
    await Promise.all(hosts.map((h) => h.run()));
    await new Promise((r) => setTimeout(r, 12_000));
    await Promise.all(hosts.map((h) => h.due!.close()));
    // The window ends where the hosts' last finished rounds ended, not at close: at 60x a round that
    // did not run in the last 50-100 ms of real time leaves a tick (or two, at a five-minute mark) unfired yet.
    const endedAt = Math.max(...hosts.map((h) => h.due!.coveredUntil));
    const fired = hosts.reduce((s, h) => s + h.due!.figures.fired, 0);
    const expected = [...pipeline.schedules].flatMap((s) => s.parsed.ticksBetween(startedAt - 60_000, endedAt, 1000).map((t) => ({ s, t })));
    // Every tick of the window, and no other, started one run that ran its handler once.
    expect(fired).toBe(expected.length);
    const counts = await eventually(async () => {
      const c = (await v.redis.hgetall<Record<string, number>>(`${keys.prefix}:ticks`)) ?? {};
      return Object.values(c).reduce((a, b) => a + Number(b), 0) >= expected.length ? c : null;
    });
    const minuteTicks = expected.filter((e) => e.s.name === "every-minute");
    expect(Object.keys(counts).sort()).toEqual(minuteTicks.map((e) => new Date(e.t).toISOString()).sort());
    const fiveTicks = expected.filter((e) => e.s.name === "every-5").map((e) => new Date(e.t).toISOString());
    for (const [tick, n] of Object.entries(counts)) expect(Number(n)).toBe(fiveTicks.includes(tick) ? 2 : 1);
    for (const { s, t } of expected) {
      const run = await readRun(v.redis, keys, pipeline, scheduleRunId(s.name, t));
      expect(run?.log.filter((e) => e.event === "enqueued")).toHaveLength(1);
    }
    console.log(`[schedules] 2 hosts, 12 s at 60x (${minuteTicks.length} minute ticks + ${fiveTicks.length} five-minute ticks): fired ${fired} (host 1/2: ${hosts.map((h) => h.due!.figures.fired).join("/")}, already fired by the other: ${hosts.map((h) => h.due!.figures.alreadyFired).join("/")}), each handler run once`);
    await Promise.all(hosts.map((h) => h.close()));
  }, 60_000);

  it("a tick fired again (another host, the Workers cron, a late caller) starts nothing; unknown stages and bad expressions are refused at definition", async () => {
    const keys = testKeys();
    const pipeline = tickPipeline(() => keys.prefix);
    const now = Date.parse("2026-01-01T10:00:30Z");
    const first = await fireSchedules(v.redis, keys, pipeline, { sinceMs: now - 5 * 60_000, now });
    expect(first.fired).toBe(6); // 09:56..10:00 each minute, and 10:00 for every-5
    const again = await Promise.all([0, 1, 2].map(() => fireSchedules(v.redis, keys, pipeline, { sinceMs: now - 10 * 60_000, now })));
    expect(again.reduce((s, r) => s + r.fired, 0)).toBe(6); // 09:51..09:55 minute ticks and 09:55 five-minute tick, once in all
    expect(() => definePipeline({ name: "x", stages: [defineStage({ name: "a", input: z.unknown(), next: [], handle: () => ({}) })], schedules: [{ name: "bad", cron: "61 * * * *" }] })).toThrow(/minute/);
    expect(() => definePipeline({ name: "x", stages: [defineStage({ name: "a", input: z.unknown(), next: [], handle: () => ({}) })], schedules: [{ name: "s", cron: "* * * * *", stage: "nope" }] })).toThrow(/unknown stage/);
    expect(again.reduce((s, r) => s + r.alreadyFired, 0)).toBe(3 * 12 - 6);
  });
});
