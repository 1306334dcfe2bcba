/**
 * In-process dispatch: createApp apps take the batch by reference (no JSON
 * round trip) and answer the same results as a JSON request would; any other
 * app still gets a plain JSON request; a batch the route took and failed is
 * reported, never sent a second time.
 */
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { createApp } from "../functions/app";
import { newEnvelope } from "../functions/envelope";
import { defineStage, definePipeline } from "../functions/pipeline";
import { InProcessInvoker } from "../worker-host/invoker";

function countingPipeline() {
  const calls: string[] = [];
  const pipeline = definePipeline({
    name: "inv",
    stages: [
      defineStage({
        name: "upper",
        input: z.object({ text: z.string() }),
        next: [],
        handle: ({ text }) => {
          calls.push(text);
          if (text === "bad") throw new Error("no bad words");
          return { result: { text: text.toUpperCase() } };
        },
      }),
    ],
  });
  return { pipeline, calls };
}

// The handlers here never touch Valkey; a placeholder client satisfies redisFromEnv.
const env = { REDIS: {} as never, KEY_PREFIX: "inv" };

describe("InProcessInvoker", () => {
  it("hands batches to a createApp app by reference, with the same results as the JSON route", async () => {
    const { pipeline, calls } = countingPipeline();
    const app = createApp({ pipeline });
    const envelopes = [newEnvelope("upper", { text: "a" }), newEnvelope("upper", { text: "bad" })];
    const results = await new InProcessInvoker(app, env).invoke("upper", envelopes);
    expect(calls).toEqual(["a", "bad"]);
    expect(results.map((r) => r.ok)).toEqual([true, false]);
    expect(results[0]).toMatchObject({ ok: true, status: "completed", outputs: [], result: { text: "A" } });
    expect(results[1]).toMatchObject({ ok: false, error: { message: "no bad words", retryable: true } });

    const viaJson = await app.request("/stages/upper", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ envelopes }) }, { ...env, IN_PROCESS: true });
    const json = (await viaJson.json()) as { results: Array<Record<string, unknown>> };
    const strip = (r: Record<string, unknown>) => ({ ...r, ms: 0 });
    expect(json.results.map(strip)).toEqual(JSON.parse(JSON.stringify(results)).map(strip));
  });

  it("falls back to a JSON request for an app that does not take batches by reference", async () => {
    let bodies = 0;
    const foreign = new Hono().post("/stages/:name", async (c) => {
      const { envelopes } = (await c.req.json()) as { envelopes: unknown[] };
      bodies++;
      return c.json({ results: envelopes.map(() => ({ ok: true, status: "completed", outputs: [], ms: 0 })) });
    });
    const results = await new InProcessInvoker(foreign, env).invoke("upper", [newEnvelope("upper", { text: "x" })]);
    expect(bodies).toBe(1);
    expect(results).toHaveLength(1);
  });

  it("reports a batch the route took and failed instead of sending it again", async () => {
    const { pipeline, calls } = countingPipeline();
    const app = createApp({ pipeline });
    // No Valkey client in env: the route takes the batch, then fails before any handler runs.
    const invoker = new InProcessInvoker(app, { KEY_PREFIX: "inv" });
    await expect(invoker.invoke("upper", [newEnvelope("upper", { text: "a" })])).rejects.toThrow(/answered 500/);
    expect(calls).toEqual([]);
  });
});
