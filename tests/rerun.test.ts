/**
 * Rerun from a step and redrive with an edited payload (issue 15 item 3), end
 * to end on a real server with a worker-host: a rerun starts a new attempt at
 * the chosen step with the input that step had (or an edited one), the steps
 * before it copied, linked both ways; a dead letter redriven with an edited
 * payload completes its run.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { createApp } from "../functions/app";
import { definePipeline, defineStage, StageError } from "../functions/pipeline";
import { readRun, type RunView } from "../functions/runs";
import { WorkerHost } from "../worker-host/host";
import { InProcessInvoker } from "../worker-host/invoker";
import { eventually, startTestValkey, testKeys, type TestValkey } from "./helpers/valkey";

let v: TestValkey;
let host: WorkerHost;
const keys = testKeys(3);
const env = () => ({ REDIS: v.redis, KEY_PREFIX: keys.prefix, PARTITIONS: "3" });

// draft -> review -> publish; review refuses a text containing "bad" for good.
const Text = z.object({ text: z.string() });
const draft = defineStage({ name: "draft", input: Text, next: ["review"], handle: ({ text }) => ({ emit: [{ payload: { text: text.trim() } }], result: { drafted: text.trim() } }) });
const review = defineStage({
  name: "review",
  input: Text,
  next: ["publish"],
  handle: ({ text }) => {
    if (text.includes("bad")) throw new StageError("review refused the text", { retryable: false });
    return { emit: [{ payload: { text: `${text}!` } }], result: { reviewed: text } };
  },
});
const publish = defineStage({ name: "publish", input: Text, next: [], handle: ({ text }) => ({ result: { published: text } }) });
const pipeline = definePipeline({ name: "rerun", stages: [draft, review, publish] });
const app = createApp({ pipeline });

beforeAll(async () => {
  v = await startTestValkey();
  host = new WorkerHost({ pipeline, keys, conn: v.conn, invoker: new InProcessInvoker(app, env()), tuning: { blockMs: 100, visibilityMs: 2000 }, duePollMs: 100 });
  await host.run();
});
afterAll(async () => {
  await host?.close();
  await v?.stop();
});

async function call(method: string, path: string, body?: unknown) {
  const res = await app.request(path, { method, headers: { "content-type": "application/json" }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) }, env());
  return { status: res.status, body: (await res.json()) as any };
}
const finished = (runId: string) =>
  eventually(async () => {
    const r = (await call("GET", `/v1/runs/${runId}`)).body as RunView;
    return r.status !== "running" ? r : null;
  });

describe("POST /v1/runs/:runId/rerun", () => {
  it("reruns from a step with its checkpointed input, or an edited one; the new run copies earlier steps and both are linked", async () => {
    const { body } = await call("POST", "/v1/runs", { payloads: [{ text: "  hello " }] });
    const original = await finished(body.runIds[0]);
    expect(original.status).toBe("completed");

    const same = await call("POST", `/v1/runs/${original.runId}/rerun`, { fromStep: "review" });
    expect(same.status).toBe(202);
    expect(same.body).toMatchObject({ rerunOf: original.runId, fromStep: "review", input: "checkpointed" });
    const rerun = await finished(same.body.runId);
    expect(rerun.status).toBe("completed");
    expect(rerun.rerunOf).toEqual({ runId: original.runId, fromStep: "review", input: "checkpointed" });
    expect(rerun.steps.map((s) => [s.stage, s.copied ?? false])).toEqual([["draft", true], ["review", false], ["publish", false]]);
    expect(rerun.steps.at(-1)!.result).toEqual({ published: "hello!" });
    // Same partition as the original (one script call touched both).
    expect(keys.partitionOf(rerun.runId)).toBe(keys.partitionOf(original.runId));

    const edited = await call("POST", `/v1/runs/${original.runId}/rerun`, { fromStep: "publish", payload: { text: "edited" } });
    const rerun2 = await finished(edited.body.runId);
    expect(rerun2.rerunOf?.input).toBe("edited");
    expect(rerun2.steps.find((s) => s.stage === "publish")!.result).toEqual({ published: "edited" });

    const after = (await call("GET", `/v1/runs/${original.runId}`)).body as RunView;
    expect(after.reruns?.map((r) => [r.runId, r.fromStep, r.input])).toEqual([[rerun.runId, "review", "checkpointed"], [rerun2.runId, "publish", "edited"]]);
    expect(after.log.filter((e) => e.event === "rerun")).toHaveLength(2);
    // The original's own steps are untouched.
    expect(after.steps.find((s) => s.stage === "publish")!.result).toEqual({ published: "hello!" });
  });

  it("404 for an unknown run, 409 for a step the run never reached without a payload, 400 for an unknown step", async () => {
    expect((await call("POST", "/v1/runs/nope123/rerun", { fromStep: "review" })).status).toBe(404);
    const { body } = await call("POST", "/v1/runs", { payloads: [{ text: "bad words" }] });
    const dead = await finished(body.runIds[0]);
    expect(dead.status).toBe("dead-lettered");
    const never = await call("POST", `/v1/runs/${dead.runId}/rerun`, { fromStep: "publish" });
    expect(never.status).toBe(409);
    expect(never.body.error.message).toMatch(/no checkpointed input/);
    expect((await call("POST", `/v1/runs/${dead.runId}/rerun`, { fromStep: "nope" })).status).toBe(400);
    // A rerun of the dead-lettered step with an edited payload completes.
    const fixed = await call("POST", `/v1/runs/${dead.runId}/rerun`, { fromStep: "review", payload: { text: "good words" } });
    expect((await finished(fixed.body.runId)).status).toBe("completed");
  });
});

describe("POST /v1/dead-letters/redrive with an edited payload", () => {
  it("puts the dead letter back with the new payload and the run completes; one id only", async () => {
    const { body } = await call("POST", "/v1/runs", { payloads: [{ text: "a bad draft" }] });
    const runId = body.runIds[0];
    expect((await finished(runId)).status).toBe("dead-lettered");
    const letters = (await call("GET", "/v1/dead-letters?stage=review")).body.items as Array<{ id: string; envelope: { runId: string } }>;
    const letter = letters.find((l) => l.envelope.runId === runId)!;
    expect((await call("POST", "/v1/dead-letters/redrive", { stage: "review", payload: { text: "x" } })).status).toBe(400);
    expect((await call("POST", "/v1/dead-letters/redrive", { stage: "review", ids: ["1-0"], payload: { text: "x" } })).status).toBe(404);
    const redriven = await call("POST", "/v1/dead-letters/redrive", { stage: "review", ids: [letter.id], payload: { text: "a good draft" } });
    expect(redriven.body).toEqual({ redriven: 1, edited: true });
    const run = await eventually(async () => {
      const r = await readRun(v.redis, keys, pipeline, runId);
      return r?.status === "completed" ? r : null;
    });
    expect(run.steps.find((s) => s.stage === "publish")!.result).toEqual({ published: "a good draft!" });
    expect(run.log.some((e) => e.event === "redriven" && e.edited === true)).toBe(true);
    expect((await call("GET", "/v1/dead-letters?stage=review")).body.items.some((l: { id: string }) => l.id === letter.id)).toBe(false);
  });
});
