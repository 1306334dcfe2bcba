/**
 * The HTTP invoker against a real local HTTP server that verifies signatures
 * like the Worker does: signing, splitting, bounded concurrency, keep-alive,
 * and failures (non-2xx, timeout, malformed answer) as errors.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newEnvelope, type Envelope } from "../functions/envelope";
import { verifyStageSignature } from "../functions/signing";
import { examplePipeline } from "../functions/example/pipeline";
import { listDeadLetters } from "../functions/dead-letters";
import { readRun, startRuns } from "../functions/runs";
import { HttpInvoker } from "../worker-host/http-invoker";
import { WorkerHost } from "../worker-host/host";
import { eventually, startTestValkey, testKeys } from "./helpers/valkey";

const keys = "cur:current-secret-0123456789,old:old-secret-0123456789ab";
let server: Server;
let base: string;
let inFlight = 0;
let maxInFlight = 0;
const sockets = new Set<unknown>();
const seen: Array<{ path: string; count: number; kid?: string }> = [];
let mode: "ok" | "fail" | "slow" | "malformed" | "fail-second" | "fail-first-attempt" = "ok";

beforeAll(async () => {
  server = createServer(async (req, res) => {
    sockets.add(req.socket);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString();
    const verdict = await verifyStageSignature({ STAGE_SIGNING_KEYS: keys }, req.method!, req.url!, body, req.headers as Record<string, string>);
    const { envelopes } = JSON.parse(body) as { envelopes: Envelope[] };
    seen.push({ path: req.url!, count: envelopes.length, kid: verdict.ok ? verdict.kid : undefined });
    await new Promise((r) => setTimeout(r, mode === "slow" ? 2000 : 20));
    inFlight--;
    if (!verdict.ok) return void res.writeHead(401).end(JSON.stringify({ error: verdict.reason }));
    if (mode === "fail" || (mode === "fail-second" && (envelopes[0].payload as { i: number }).i >= 100)) return void res.writeHead(503).end("busy");
    if (mode === "fail-first-attempt" && envelopes.some((e) => e.attempt === 1)) return void res.writeHead(502).end("bad gateway");
    if (mode === "malformed") return void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ results: [{ ok: "yes" }] }));
    const results = envelopes.map((e) => ({ ok: true, status: "completed", outputs: [], result: e.payload, ms: 1 }));
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ results }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const batch = (n: number) => Array.from({ length: n }, (_, i) => newEnvelope("fetcher", { i }));

describe("HttpInvoker", () => {
  it("signs with the first key, splits large batches, keeps results in order", async () => {
    mode = "ok";
    seen.length = 0;
    const invoker = new HttpInvoker({ baseUrl: `${base}/`, signingKeys: keys, maxBatchPerRequest: 100 });
    const results = await invoker.invoke("fetcher", batch(250));
    expect(results.map((r) => (r.ok ? (r.result as { i: number }).i : -1))).toEqual(Array.from({ length: 250 }, (_, i) => i));
    expect(seen.map((s) => s.count).sort((a, b) => a - b)).toEqual([50, 100, 100]);
    expect(new Set(seen.map((s) => s.path))).toEqual(new Set(["/stages/fetcher"]));
    expect(seen.every((s) => s.kid === "cur")).toBe(true);
    expect(invoker.stats).toEqual({ requests: 3, envelopes: 250, failures: 0 });
    await invoker.close();
  });

  it("bounds concurrency and reuses keep-alive connections", async () => {
    mode = "ok";
    maxInFlight = 0;
    sockets.clear();
    const invoker = new HttpInvoker({ baseUrl: base, signingKeys: keys, maxConcurrency: 2, maxBatchPerRequest: 1 });
    await Promise.all(Array.from({ length: 4 }, () => invoker.invoke("fetcher", batch(3))));
    expect(maxInFlight).toBeLessThanOrEqual(2);
    expect(maxInFlight).toBeGreaterThan(0);
    expect(sockets.size).toBeLessThanOrEqual(2);
    await invoker.invoke("fetcher", batch(1));
    expect(sockets.size).toBeLessThanOrEqual(2);
    await invoker.close();
  });

  it("a non-2xx answer, a timeout or a malformed answer makes the call throw", async () => {
    const invoker = new HttpInvoker({ baseUrl: base, signingKeys: keys, timeoutMs: 300 });
    mode = "fail";
    await expect(invoker.invoke("fetcher", batch(2))).rejects.toThrow(/answered 503/);
    mode = "slow";
    await expect(invoker.invoke("fetcher", batch(2))).rejects.toThrow(/within 300 ms/);
    mode = "malformed";
    await expect(invoker.invoke("fetcher", batch(1))).rejects.toThrow(/malformed/);
    const unknownKey = new HttpInvoker({ baseUrl: base, signingKeys: "nope:some-other-secret-0000" });
    mode = "ok";
    await expect(unknownKey.invoke("fetcher", batch(1))).rejects.toThrow(/answered 401/);
    await Promise.all([invoker.close(), unknownKey.close()]);
  });

  it("when one of several requests fails, only its envelopes become retryable failures", async () => {
    mode = "fail-second";
    const invoker = new HttpInvoker({ baseUrl: base, signingKeys: keys, maxBatchPerRequest: 100 });
    const results = await invoker.invoke("fetcher", batch(150));
    expect(results.slice(0, 100).every((r) => r.ok)).toBe(true);
    expect(results.slice(100).every((r) => !r.ok && r.error.retryable && /503/.test(r.error.message))).toBe(true);
    await invoker.close();
  });
});

describe("HTTP dispatch failures in the stage worker", () => {
  it("a non-2xx answer is a retryable failure: redelivered, then committed or dead-lettered", async () => {
    const valkey = await startTestValkey();
    const invoker = new HttpInvoker({ baseUrl: base, signingKeys: keys });
    const run = async (failMode: typeof mode) => {
      mode = failMode;
      const k = testKeys();
      const host = new WorkerHost({
        pipeline: examplePipeline, keys: k, conn: valkey.conn, invoker, stages: ["normalize"],
        tuning: { blockMs: 50, backoffMs: 10, maxBackoffMs: 20, maxDeliveries: 3, reclaimIntervalMs: 30, visibilityMs: 5000 },
      });
      await host.run();
      const [runId] = await startRuns(valkey.redis, [{ text: "retry me" }], { keys: k, pipeline: examplePipeline });
      const view = await eventually(async () => {
        const v = await readRun(valkey.redis, k, examplePipeline, runId);
        // Only normalize runs here, so a recovered run waits at wordcount ("running").
        return v?.steps.some((s) => s.stage === "normalize") ? v : null;
      });
      await host.close();
      return { k, runId, view: view! };
    };
    try {
      const recovered = await run("fail-first-attempt");
      // The test server's handler answers 502 to every first attempt and emits nothing.
      expect(recovered.view.steps.find((s) => s.stage === "normalize")).toMatchObject({ status: "completed", attempt: 2 });
      expect(recovered.view.status).toBe("completed");

      const lost = await run("fail");
      expect(lost.view.status).toBe("dead-lettered");
      const [dead] = await listDeadLetters(valkey.redis, lost.k, examplePipeline, { stage: "normalize" });
      expect(dead.error).toMatch(/dispatch failed: stage normalize answered 503/);
      expect(dead.attempts).toBe(3);
    } finally {
      mode = "ok";
      await invoker.close();
      await valkey.stop();
    }
  });
});
