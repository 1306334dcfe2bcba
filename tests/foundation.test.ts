/**
 * The stage runtime against a real server: exactly-once arrival, reclaim of a
 * dead consumer's entries, retries, dead letters, malformed entries, SCRIPT
 * FLUSH, dedupe of redelivered, already-checkpointed entries, and a close()
 * that is bounded. Faults of the server and the network: reliability-*.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newEnvelope } from "../functions/envelope";
import { readRun, startRuns } from "../functions/runs";
import { readStats } from "../functions/stats";
import { runScript } from "../worker-host/valkey";
import { eventually, startTestValkey, testKeys, type TestValkey } from "./helpers/valkey";
import { countingPipeline, makeHost, singleStagePipeline, StageError } from "./helpers/pipelines";

let v: TestValkey;
beforeAll(async () => {
  v = await startTestValkey();
});
afterAll(async () => {
  await v?.stop();
});

async function hashValues(key: string): Promise<Record<string, string>> {
  return (await v.conn.hgetall(key)) as Record<string, string>;
}

describe("stage runtime", () => {
  it("moves 10,000 envelopes through a 2-stage pipeline exactly once", async () => {
    const keys = testKeys();
    const pipeline = countingPipeline();
    // A visibility timeout far above a batch's time even on a loaded machine: this test is
    // about exactly-once commits, and the helper's 400 ms would let the reclaim loop rerun a
    // batch whose commit is merely slow (allowed: handlers are at-least-once).
    const { host } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis, tuning: { batchSize: 200, concurrency: 4, visibilityMs: 15_000 } });
    await host.run();
    const total = 10_000;
    const runIds: string[] = [];
    for (let i = 0; i < total; i += 500) {
      const payloads = Array.from({ length: Math.min(500, total - i) }, (_, j) => ({ n: i + j }));
      runIds.push(...(await startRuns(v.redis, payloads, { keys, pipeline })));
    }
    await eventually(async () => {
      const stats = await readStats(v.redis, keys, pipeline);
      return stats.stages.find((s) => s.name === "second")!.processed >= total;
    }, { timeoutMs: 60_000, stepMs: 100 });
    await host.close();

    const stats = await readStats(v.redis, keys, pipeline);
    const byName = Object.fromEntries(stats.stages.map((s) => [s.name, s]));
    expect(byName.first.processed).toBe(total);
    expect(byName.second.processed).toBe(total);
    expect(byName.first.ingested).toBe(total);
    expect(byName.first.pending + byName.second.pending).toBe(0);
    expect(byName.first.deadLettered + byName.second.deadLettered).toBe(0);

    // Each n reached the second stage's stream exactly once...
    const entries = (await v.conn.xrange(keys.stream("second", 0), "-", "+")) as Array<[string, string[]]>;
    expect(entries.length).toBe(total);
    const seen = new Set(entries.map(([, f]) => JSON.parse(f[1]).payload.n));
    expect(seen.size).toBe(total);
    // ...each handler ran once per n, and every run is completed.
    const calls = await hashValues(`${keys.prefix}:calls:second`);
    expect(Object.keys(calls).length).toBe(total);
    expect(Object.values(calls).every((c) => c === "1")).toBe(true);
    const statuses = await Promise.all(runIds.slice(0, 200).map((id) => v.conn.hget(keys.run(id), "status")));
    expect(new Set(statuses)).toEqual(new Set(["completed"]));
  });

  it("reclaims entries a killed consumer read but never committed, and completes them", async () => {
    const keys = testKeys();
    const pipeline = countingPipeline();
    const { host: setup } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis });
    await Promise.all(setup.workers.map((w) => w.ensureGroups()));
    const runIds = await startRuns(v.redis, Array.from({ length: 20 }, (_, n) => ({ n })), { keys, pipeline });

    // A consumer reads the entries and dies before committing: they sit in its PEL.
    const read = (await v.conn.xreadgroup("GROUP", "first", "doomed-consumer", "COUNT", 100, "STREAMS", keys.stream("first", 0), ">")) as Array<[string, unknown[]]>;
    expect(read[0][1].length).toBe(20);
    const pendingBefore = (await v.conn.xpending(keys.stream("first", 0), "first")) as [number, string, string, Array<[string, string]>];
    expect(pendingBefore[0]).toBe(20);
    expect(pendingBefore[3]).toEqual([["doomed-consumer", "20"]]);

    // Another consumer reclaims them after the visibility timeout and completes the runs.
    const { host } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis, consumer: "survivor", tuning: { visibilityMs: 300 } });
    await host.run();
    await eventually(async () => {
      const statuses = await Promise.all(runIds.map((id) => v.conn.hget(keys.run(id), "status")));
      return statuses.every((s) => s === "completed");
    });
    await host.close();
    const run = await readRun(v.redis, keys, pipeline, runIds[0]);
    expect(run?.steps.map((s) => [s.stage, s.attempt])).toEqual([["first", 2], ["second", 1]]);
    const pendingAfter = (await v.conn.xpending(keys.stream("first", 0), "first")) as [number];
    expect(pendingAfter[0]).toBe(0);
    const calls = await hashValues(`${keys.prefix}:calls:second`);
    expect(Object.keys(calls).length).toBe(20);
  });

  it("retries retryable failures with backoff and completes on a later attempt", async () => {
    const keys = testKeys();
    const pipeline = singleStagePipeline((_, attempt) => {
      if (attempt < 3) throw new Error(`transient failure on attempt ${attempt}`);
      return { attempt };
    });
    const { host } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis, tuning: { maxDeliveries: 5 } });
    await host.run();
    const [runId] = await startRuns(v.redis, [{ n: 1 }], { keys, pipeline });
    const run = await eventually(async () => {
      const r = await readRun(v.redis, keys, pipeline, runId);
      return r?.status === "completed" ? r : null;
    });
    await host.close();
    expect(run.steps[0]).toMatchObject({ stage: "only", status: "completed", attempt: 3, result: { attempt: 3 } });
    expect(run.log.filter((l) => l.event === "retry").map((l) => l.error)).toEqual(["transient failure on attempt 1", "transient failure on attempt 2"]);
    const stats = await readStats(v.redis, keys, pipeline);
    expect(stats.stages[0]).toMatchObject({ processed: 1, retried: 2, failed: 2, deadLettered: 0, pending: 0 });
  });

  it("dead-letters an entry whose handler always throws, after maxDeliveries, with the error text", async () => {
    const keys = testKeys();
    const pipeline = singleStagePipeline(({ n }) => {
      throw new Error(`boom on item ${n}`);
    });
    const { host, app, env } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis, tuning: { maxDeliveries: 3 } });
    await host.run();
    const [runId] = await startRuns(v.redis, [{ n: 42 }], { keys, pipeline });
    await eventually(async () => (await v.conn.xlen(keys.deadLetters("only", 0))) === 1);
    await host.close();

    const res = await app.request("/v1/dead-letters?stage=only", {}, env);
    expect(res.status).toBe(200);
    const { items } = (await res.json()) as { items: Array<Record<string, unknown>> };
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ stage: "only", attempts: 3 });
    expect(String(items[0].error)).toContain("boom on item 42");
    expect((items[0].envelope as { runId: string }).runId).toBe(runId);
    const run = await readRun(v.redis, keys, pipeline, runId);
    expect(run?.status).toBe("dead-lettered");
    const stats = await readStats(v.redis, keys, pipeline);
    expect(stats.stages[0]).toMatchObject({ deadLettered: 1, pending: 0, processed: 0, retried: 2 });
  });

  it("dead-letters a non-retryable failure at once", async () => {
    const keys = testKeys();
    const pipeline = singleStagePipeline(() => {
      throw new StageError("bad article", { retryable: false });
    });
    const { host } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis, tuning: { maxDeliveries: 5 } });
    await host.run();
    await startRuns(v.redis, [{ n: 1 }], { keys, pipeline });
    await eventually(async () => (await v.conn.xlen(keys.deadLetters("only", 0))) === 1);
    await host.close();
    const [[, fields]] = (await v.conn.xrange(keys.deadLetters("only", 0), "-", "+")) as Array<[string, string[]]>;
    const f = Object.fromEntries(fields.reduce<Array<[string, string]>>((acc, x, i) => (i % 2 ? acc : [...acc, [x, fields[i + 1]]]), []));
    expect(f.error).toBe("bad article");
    expect(f.attempts).toBe("1");
  });

  it("dead-letters malformed entries with the reason and keeps the loop running", async () => {
    const keys = testKeys();
    const pipeline = countingPipeline();
    const { host } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis });
    await host.run();
    const stream = keys.stream("first", 0);
    await v.conn.xadd(stream, "*", "e", "{not json");
    await v.conn.xadd(stream, "*", "foo", "bar");
    await v.conn.xadd(stream, "*", "e", JSON.stringify({ runId: "has spaces!", stage: "first" }));
    await v.conn.xadd(stream, "*", "e", JSON.stringify(newEnvelope("second", { n: 1 })));
    const [runId] = await startRuns(v.redis, [{ n: 7 }], { keys, pipeline });
    await eventually(async () => (await v.conn.hget(keys.run(runId), "status")) === "completed");
    await eventually(async () => (await v.conn.xlen(keys.deadLetters("first", 0))) === 4);
    await host.close();
    const dead = (await v.conn.xrange(keys.deadLetters("first", 0), "-", "+")) as Array<[string, string[]]>;
    const errors = dead.map(([, f]) => f[f.indexOf("error") + 1]);
    expect(errors[0]).toMatch(/not valid JSON/);
    expect(errors[1]).toMatch(/no 'e' \(envelope\) field/);
    expect(errors[2]).toMatch(/failed validation: runId/);
    expect(errors[3]).toMatch(/envelope for stage second found on the first stream/);
    // The raw entry is kept, so nothing is lost.
    expect(dead[1][1]).toContain(JSON.stringify({ foo: "bar" }));
    const pending = (await v.conn.xpending(stream, "first")) as [number];
    expect(pending[0]).toBe(0);
  });

  it("keeps committing after SCRIPT FLUSH (EVALSHA falls back to EVAL)", async () => {
    const keys = testKeys();
    const pipeline = countingPipeline();
    const { host } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis });
    await host.run();
    const first = await startRuns(v.redis, [{ n: 1 }, { n: 2 }], { keys, pipeline });
    await eventually(async () => (await Promise.all(first.map((id) => v.conn.hget(keys.run(id), "status")))).every((s) => s === "completed"));
    await v.conn.script("FLUSH");
    const second = await startRuns(v.redis, [{ n: 3 }, { n: 4 }], { keys, pipeline });
    await eventually(async () => (await Promise.all(second.map((id) => v.conn.hget(keys.run(id), "status")))).every((s) => s === "completed"));
    await host.close();
  });

  it("keeps a slow handler's entries leased: a second consumer does not run them again while it works", async () => {
    const keys = testKeys();
    const calls = new Map<number, number>();
    const pipeline = singleStagePipeline(async ({ n }) => {
      calls.set(n, (calls.get(n) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, 1200)); // four times the visibility timeout
      return { n };
    });
    // Two consumers of the same stage; the reclaim loops run every 50 ms with a 300 ms visibility timeout.
    const tuning = { visibilityMs: 300, reclaimIntervalMs: 50 };
    const { host: a } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis, consumer: "a", tuning });
    const { host: b } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis, consumer: "b", tuning });
    await Promise.all([a.run(), b.run()]);
    const runIds = await startRuns(v.redis, [{ n: 1 }, { n: 2 }, { n: 3 }], { keys, pipeline });
    await eventually(async () => (await Promise.all(runIds.map((id) => v.conn.hget(keys.run(id), "status")))).every((s) => s === "completed"), { timeoutMs: 10_000 });
    await Promise.all([a.close(), b.close()]);
    expect([...calls.entries()].sort()).toEqual([[1, 1], [2, 1], [3, 1]]);
    const stats = await readStats(v.redis, keys, pipeline);
    expect(stats.stages[0].duplicates).toBe(0);
  });

  it("extends only the leases a consumer still owns, without counting a delivery", async () => {
    const stream = `t${Date.now().toString(36)}:lease`;
    await v.conn.xgroup("CREATE", stream, "g", "0", "MKSTREAM");
    const mine = await v.conn.xadd(stream, "*", "e", "1");
    const taken = await v.conn.xadd(stream, "*", "e", "2");
    await v.conn.xreadgroup("GROUP", "g", "a", "COUNT", 10, "STREAMS", stream, ">");
    // Consumer b has reclaimed the second entry already.
    await v.conn.xclaim(stream, "g", "b", 0, taken!);
    await new Promise((r) => setTimeout(r, 60));
    expect(await runScript(v.conn, "extendLease", [stream], ["g", "a", mine!, taken!])).toBe(1);
    const pending = (await v.conn.xpending(stream, "g", "-", "+", 10)) as Array<[string, string, number, number]>;
    const byId = Object.fromEntries(pending.map(([id, owner, idle, deliveries]) => [id, { owner, idle, deliveries }]));
    expect(byId[mine!].owner).toBe("a");
    expect(byId[mine!].idle).toBeLessThan(50);
    expect(byId[mine!].deliveries).toBe(1);
    expect(byId[taken!].owner).toBe("b");
  });

  it("acks a redelivered, already-checkpointed envelope without duplicating its outputs", async () => {
    const keys = testKeys();
    const pipeline = countingPipeline();
    const { host } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis });
    await host.run();
    const [runId] = await startRuns(v.redis, [{ n: 5 }], { keys, pipeline });
    await eventually(async () => (await v.conn.hget(keys.run(runId), "status")) === "completed");
    // The same envelope arrives again (producer retry, redrive, ...).
    const [[, fields]] = (await v.conn.xrange(keys.stream("first", 0), "-", "+")) as Array<[string, string[]]>;
    await v.conn.xadd(keys.stream("first", 0), "*", "e", fields[1]);
    await eventually(async () => {
      const stats = await readStats(v.redis, keys, pipeline);
      return stats.stages[0].redeliveredAfterCommit === 1 && stats.stages[0].pending === 0;
    });
    // The old name stays, with the same count, until the next major version.
    expect((await readStats(v.redis, keys, pipeline)).stages[0].duplicates).toBe(1);
    await host.close();
    expect(await v.conn.xlen(keys.stream("second", 0))).toBe(1);
    expect(await v.conn.hget(`${keys.prefix}:calls:second`, "5")).toBe("1");
  });

  it("redrives dead letters back into the stage over HTTP", async () => {
    const keys = testKeys();
    let broken = true;
    const pipeline = singleStagePipeline(() => {
      if (broken) throw new StageError("downstream is down", { retryable: false });
      return { ok: true };
    });
    const { host, app, env } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis });
    await host.run();
    const [runId] = await startRuns(v.redis, [{ n: 1 }], { keys, pipeline });
    await eventually(async () => (await v.conn.xlen(keys.deadLetters("only", 0))) === 1);
    broken = false;
    const bad = await app.request("/v1/dead-letters/redrive", { method: "POST", body: JSON.stringify({ stage: "nope" }), headers: { "content-type": "application/json" } }, env);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { issues: unknown[] } }).error.issues.length).toBeGreaterThan(0);
    const res = await app.request("/v1/dead-letters/redrive", { method: "POST", body: JSON.stringify({ stage: "only" }), headers: { "content-type": "application/json" } }, env);
    expect(await res.json()).toEqual({ redriven: 1 });
    await eventually(async () => (await v.conn.hget(keys.run(runId), "status")) === "completed");
    await host.close();
    expect(await v.conn.xlen(keys.deadLetters("only", 0))).toBe(0);
  });

  it("finishes and commits in-flight work on close()", async () => {
    const keys = testKeys();
    let started = 0;
    const pipeline = singleStagePipeline(async () => {
      started++;
      await new Promise((r) => setTimeout(r, 300));
      return { slow: true };
    });
    const { host } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis });
    await host.run();
    const runIds = await startRuns(v.redis, [{ n: 1 }, { n: 2 }, { n: 3 }], { keys, pipeline });
    await eventually(() => started === 3);
    await host.close();
    const statuses = await Promise.all(runIds.map((id) => v.conn.hget(keys.run(id), "status")));
    expect(statuses).toEqual(["completed", "completed", "completed"]);
    const pending = (await v.conn.xpending(keys.stream("only", 0), "only")) as [number];
    expect(pending[0]).toBe(0);
  });

  it("close() gives up on a batch that cannot finish within closeTimeoutMs; its entries stay pending and are reclaimed", async () => {
    const keys = testKeys();
    let hang = true;
    const pipeline = singleStagePipeline(async ({ n }) => {
      if (hang) await new Promise((r) => setTimeout(r, 5000));
      return { n };
    });
    const lines: string[] = [];
    const { host } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis, consumer: "leaving", tuning: { closeTimeoutMs: 300 }, log: (l) => lines.push(l) });
    await host.run();
    const [runId] = await startRuns(v.redis, [{ n: 1 }], { keys, pipeline });
    await eventually(async () => ((await v.conn.xpending(keys.stream("only", 0), "only")) as [number])[0] === 1);
    const started = performance.now();
    await host.close();
    expect(performance.now() - started).toBeLessThan(1500);
    expect(lines.some((l) => /1 batch\(es\) not committed by the close deadline/.test(l))).toBe(true);
    hang = false;
    const { host: next } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis, consumer: "next" });
    await next.run();
    await eventually(async () => (await v.conn.hget(keys.run(runId), "status")) === "completed");
    await next.close();
    // Completed by the second consumer's reclaim (a second delivery), not by the abandoned batch.
    expect((await readRun(v.redis, keys, pipeline, runId))?.steps[0]).toMatchObject({ stage: "only", attempt: 2 });
  });

  it("reconnects a blocking read that never settles (watchdog)", async () => {
    const keys = testKeys();
    const pipeline = countingPipeline();
    const lines: string[] = [];
    const { host } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis, tuning: { blockMs: 100, watchdogGraceMs: 200 }, log: (l) => lines.push(l) });
    await host.run();
    // Pause every client for longer than blockMs + grace: the blocking reads hang.
    const admin = v.connect();
    await admin.client("PAUSE", 1500, "ALL");
    await eventually(() => lines.some((l) => l.includes("did not settle")), { timeoutMs: 5000 });
    const [runId] = await startRuns(v.redis, [{ n: 1 }], { keys, pipeline });
    await eventually(async () => (await v.conn.hget(keys.run(runId), "status")) === "completed");
    await host.close();
  });

  it("prunes departed consumers only when they own no pending entries", async () => {
    const keys = testKeys();
    const pipeline = countingPipeline();
    const { host } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis, consumer: "me" });
    await Promise.all(host.workers.map((w) => w.ensureGroups()));
    const stream = keys.stream("first", 0);
    await v.conn.xadd(stream, "*", "e", "x");
    await v.conn.xreadgroup("GROUP", "first", "holder", "COUNT", 1, "STREAMS", stream, ">");
    await v.conn.xgroup("CREATECONSUMER", stream, "first", "idle-empty");
    await new Promise((r) => setTimeout(r, 30));
    expect(await host.pruneConsumers()).toBe(0); // default: idle for an hour
    const pruner = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis, consumer: "me" }).host;
    (pruner as unknown as { options: { pruneConsumersIdleMs: number } }).options.pruneConsumersIdleMs = 10;
    expect(await pruner.pruneConsumers()).toBe(1);
    const left = (await v.conn.xinfo("CONSUMERS", stream, "first")) as Array<string[]>;
    expect(left.map((c) => c[1])).toEqual(["holder"]);
  });

  it("spreads runs over partitions and keeps each commit in one slot", async () => {
    const keys = testKeys(4);
    const pipeline = countingPipeline();
    const { host } = makeHost({ pipeline, keys, conn: v.conn, redis: v.redis });
    await host.run();
    const runIds = await startRuns(v.redis, Array.from({ length: 200 }, (_, n) => ({ n })), { keys, pipeline });
    await eventually(async () => (await readStats(v.redis, keys, pipeline)).stages[1].processed === 200);
    await host.close();
    const used = new Set(runIds.map((id) => keys.partitionOf(id)));
    expect(used.size).toBe(4);
    for (const p of keys.allPartitions) expect(await v.conn.xlen(keys.stream("second", p))).toBeGreaterThan(0);
    // Every key of a run's partition carries the same hash tag as its streams.
    const id = runIds[0];
    const tag = /\{[^}]+\}/.exec(keys.stream("first", keys.partitionOf(id)))![0];
    for (const k of [keys.run(id), keys.runLog(id), keys.stream("first", keys.partitionOf(id)), keys.deadLetters("first", keys.partitionOf(id))]) {
      expect(k).toContain(tag);
    }
  });
});
