/**
 * Waiting for an event (issue 15 item 4), end to end on a real server: a
 * handler's `waitFor` parks the run (acked: nothing pending, no consumer
 * held); `POST /v1/runs/:runId/events/:event` resumes it with the data as
 * the next stage's input; a timeout goes to the declared timeout step or to
 * the dead letters (and a redrive runs the waiting stage again); a parked
 * run survives a host restart and a server kill -9 + restart (AOF), and
 * resumes afterwards. Counts in /v1/stats.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createApp } from "../functions/app";
import { randomHex } from "../functions/envelope";
import { createKeys } from "../functions/keys";
import { definePipeline, defineStage } from "../functions/pipeline";
import type { RunView } from "../functions/runs";
import { WorkerHost } from "../worker-host/host";
import { InProcessInvoker } from "../worker-host/invoker";
import { connectValkey, upstashOverValkey, type Connection } from "../worker-host/valkey";
import { startRestartableValkey, type RestartableValkey } from "./helpers/restartable-valkey";
import { eventually } from "./helpers/valkey";

// draft -> approval (waits for "approved") -> publish | expired
const draft = defineStage({ name: "draft", input: z.object({ text: z.string(), timeoutMs: z.number().optional(), onTimeout: z.boolean().optional() }), next: ["approval"], handle: (p) => ({ emit: [{ payload: p }] }) });
const approval = defineStage({
  name: "approval",
  input: z.object({ text: z.string(), timeoutMs: z.number().optional(), onTimeout: z.boolean().optional() }),
  next: ["publish", "expired"],
  handle: ({ text, timeoutMs, onTimeout }) => ({
    result: { asked: text },
    waitFor: { event: "approved", to: "publish", ...(timeoutMs !== undefined ? { timeoutMs } : {}), ...(onTimeout ? { onTimeout: "expired" } : {}) },
  }),
});
const publish = defineStage({ name: "publish", input: z.object({ by: z.string(), note: z.string().optional() }), next: [], handle: ({ by, note }) => ({ result: { publishedBy: by, note } }) });
const expired = defineStage({ name: "expired", input: z.object({ timedOut: z.literal(true), event: z.string(), waitedMs: z.number() }), next: [], handle: (p) => ({ result: { expired: p.event } }) });
const pipeline = definePipeline({ name: "approvals", stages: [draft, approval, publish, expired] });
const app = createApp({ pipeline });

let v: RestartableValkey;
let conn: Connection;
const keys = createKeys({ prefix: `w${randomHex(3)}`, partitions: 2 });
const env = () => ({ REDIS: upstashOverValkey(conn), KEY_PREFIX: keys.prefix, PARTITIONS: "2" });
let host: WorkerHost | undefined;

function startHost(): Promise<void> {
  const e = env();
  host = new WorkerHost({ pipeline, keys, conn, invoker: new InProcessInvoker(app, e), tuning: { blockMs: 100, visibilityMs: 2000, reclaimIntervalMs: 200 }, duePollMs: 100 });
  return host.run();
}

beforeAll(async () => {
  v = await startRestartableValkey();
  conn = connectValkey(v.url, { name: "wait-test" });
  await startHost();
}, 60_000);
afterAll(async () => {
  await host?.close();
  conn?.disconnect();
  await v?.stop();
});

async function call(method: string, path: string, body?: unknown) {
  const res = await app.request(path, { method, headers: { "content-type": "application/json" }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) }, env());
  return { status: res.status, body: (await res.json()) as any };
}
const run = async (id: string) => (await call("GET", `/v1/runs/${id}`)).body as RunView;
const until = (id: string, status: string) => eventually(async () => ((await run(id)).status === status ? run(id) : null), { timeoutMs: 30_000 });

describe("waitFor", () => {
  it("parks without holding a consumer; an event resumes it with its data as the next stage's input; a second event is refused", async () => {
    const { body } = await call("POST", "/v1/runs", { payloads: [{ text: "launch post", timeoutMs: 600_000 }] });
    const runId = body.runIds[0];
    const parked = await until(runId, "waiting");
    expect(parked.waitingFor).toMatchObject({ event: "approved", to: "publish", onTimeout: null });
    expect(parked.waitingFor!.timeoutAt).toBeGreaterThan(Date.now());
    expect(parked.steps.find((s) => s.stage === "approval")).toMatchObject({ status: "waiting", result: { asked: "launch post" } });
    // Nothing pending on the stage that waits: the entry was acked.
    const p = keys.partitionOf(runId);
    expect(Number((await conn.xpending(keys.stream("approval", p), keys.group("approval")))[0])).toBe(0);
    expect((await call("GET", "/v1/stats")).body.durable.parked).toBe(1);
    expect((await call("POST", `/v1/runs/${runId}/events/rejected`, { data: {} })).status).toBe(409);
    expect((await call("POST", `/v1/runs/${runId}/events/Bad Name`, { data: {} })).status).toBe(400);
    expect((await call("POST", `/v1/runs/nosuchrun/events/approved`, { data: {} })).status).toBe(404);

    const resumed = await call("POST", `/v1/runs/${runId}/events/approved`, { data: { by: "ana", note: "ship it" } });
    expect(resumed).toEqual({ status: 202, body: { runId, event: "approved", resumed: true, to: "publish" } });
    const done = await until(runId, "completed");
    expect(done.steps.find((s) => s.stage === "publish")!.result).toEqual({ publishedBy: "ana", note: "ship it" });
    expect(done.waitingFor).toBeUndefined();
    expect(done.log.map((e) => e.event)).toEqual(expect.arrayContaining(["waiting", "resumed"]));
    expect((await call("POST", `/v1/runs/${runId}/events/approved`, { data: { by: "bob" } })).status).toBe(409);
    expect((await call("GET", "/v1/stats")).body.durable.parked).toBe(0);
  });

  it("a timed-out wait goes to its timeout step, or without one to the dead letters; redriving that dead letter asks again", async () => {
    const a = (await call("POST", "/v1/runs", { payloads: [{ text: "t1", timeoutMs: 300, onTimeout: true }] })).body.runIds[0];
    const b = (await call("POST", "/v1/runs", { payloads: [{ text: "t2", timeoutMs: 300 }] })).body.runIds[0];
    const timedOut = await until(a, "completed");
    expect(timedOut.steps.find((s) => s.stage === "expired")!.result).toEqual({ expired: "approved" });
    expect(timedOut.log.some((e) => e.event === "timed-out")).toBe(true);
    const dead = await until(b, "dead-lettered");
    expect(dead.steps.find((s) => s.stage === "approval")).toMatchObject({ status: "dead-lettered", error: expect.stringMatching(/timed out after \d+ ms waiting for event approved/) });
    const letters = (await call("GET", "/v1/dead-letters?stage=approval")).body.items as Array<{ id: string; envelope: { runId: string } }>;
    const letter = letters.find((l) => l.envelope.runId === b)!;
    expect(letter).toBeDefined();
    expect((await call("POST", "/v1/dead-letters/redrive", { stage: "approval", ids: [letter.id], payload: { text: "t2 again", timeoutMs: 600_000 } })).status).toBe(200);
    await until(b, "waiting");
    expect((await call("POST", `/v1/runs/${b}/events/approved`, { data: { by: "cy" } })).status).toBe(202);
    expect((await until(b, "completed")).steps.find((s) => s.stage === "publish")!.result).toMatchObject({ publishedBy: "cy" });
  });

  it("a parked run survives a host restart and a server kill -9 + restart, and resumes afterwards", async () => {
    const runId = (await call("POST", "/v1/runs", { payloads: [{ text: "durable", timeoutMs: 600_000 }] })).body.runIds[0];
    await until(runId, "waiting");
    await host!.close();
    await startHost();
    expect((await run(runId)).status).toBe("waiting");
    await host!.close();
    await v.restart();
    await eventually(async () => (await conn.ping()) === "PONG", { timeoutMs: 30_000 });
    await startHost();
    const after = await run(runId);
    expect(after.status).toBe("waiting");
    expect(after.waitingFor?.event).toBe("approved");
    expect((await call("GET", "/v1/stats")).body.durable.parked).toBeGreaterThanOrEqual(1);
    expect((await call("POST", `/v1/runs/${runId}/events/approved`, { data: { by: "after-restart" } })).status).toBe(202);
    expect((await until(runId, "completed")).steps.find((s) => s.stage === "publish")!.result).toMatchObject({ publishedBy: "after-restart" });
  }, 120_000);

  it("a handler's bad wait (emit too, unknown to/onTimeout, bad event) fails its envelope for good", async () => {
    const bad = defineStage({ name: "bad", input: z.object({ k: z.number() }), next: ["ok"], handle: ({ k }) => (k === 0 ? { emit: [{ payload: {} }], waitFor: { event: "e" } } : k === 1 ? { waitFor: { event: "e", to: "nope" } } : { waitFor: { event: "E!" } }) });
    const ok = defineStage({ name: "ok", input: z.unknown(), next: [], handle: () => ({}) });
    const p2 = definePipeline({ name: "bad-waits", stages: [bad, ok] });
    const { runStageBatch } = await import("../functions/stage-route");
    const { newEnvelope } = await import("../functions/envelope");
    const results = await runStageBatch(p2, "bad", env(), [0, 1, 2].map((k) => newEnvelope("bad", { k })));
    expect(results.map((r) => (r.ok ? "ok" : r.error.retryable))).toEqual([false, false, false]);
    expect(results.map((r) => (r.ok ? "" : r.error.message))).toEqual([expect.stringMatching(/emit together/), expect.stringMatching(/waitFor.to nope/), expect.stringMatching(/waitFor.event/)]);
  });
});
