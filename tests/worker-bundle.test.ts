/**
 * The deploy bundle: `wrangler deploy --dry-run` builds it offline, it imports
 * no node:* module, and Miniflare runs it: /health reaches Valkey through the
 * REST bridge, a signed stage call runs, an unsigned one gets 401. The bundle
 * is the one this test run builds once (tests/helpers/news-bundle.ts, with
 * buildWorkerBundle, as `npm run build:worker`) for every file that loads it.
 */
import { dirname } from "node:path";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newEnvelope, randomHex } from "../functions/envelope";
import { createKeys } from "../functions/keys";
import { startRuns } from "../functions/runs";
import { signStageRequest } from "../functions/signing";
import { compatibilityDateFromWranglerToml, varsFromWranglerToml } from "../worker-host/http-mode";
import { startRestBridge, type RestBridge } from "../worker-host/rest-bridge";
import type { WorkerBundle } from "../worker-host/worker-bundle";
import { samplePayloads } from "../worker-host/news/sample-work";
import { pipeline } from "../functions/news/index";
import { newsWorkerBundle } from "./helpers/news-bundle";
import { startTestValkey, type TestValkey } from "./helpers/valkey";

let valkey: TestValkey;
let bridge: RestBridge;
let bundle: WorkerBundle;
let mf: Miniflare;
const signingKey = { kid: "test", secret: randomHex(16) };
const keyPrefix = `wb${randomHex(3)}`;

beforeAll(async () => {
  [valkey, bundle] = await Promise.all([startTestValkey(), newsWorkerBundle()]);
  bridge = await startRestBridge({ conn: valkey.connect(), token: randomHex(16) });
  mf = new Miniflare({
    modules: [{ type: "ESModule", path: bundle.scriptPath }],
    modulesRoot: dirname(bundle.scriptPath),
    compatibilityDate: compatibilityDateFromWranglerToml(),
    bindings: {
      ...varsFromWranglerToml(),
      KEY_PREFIX: keyPrefix,
      UPSTASH_REDIS_REST_URL: bridge.url,
      UPSTASH_REDIS_REST_TOKEN: bridge.token,
      STAGE_SIGNING_KEYS: `${signingKey.kid}:${signingKey.secret}`,
    },
  });
  await mf.ready;
});

afterAll(async () => {
  await mf?.dispose();
  await bridge?.close();
  await valkey?.stop();
});

describe("deploy bundle in Miniflare", () => {
  it("builds offline without node:* imports", () => {
    expect(bundle.nodeImports).toEqual([]);
    expect(bundle.bytes).toBeGreaterThan(0);
    console.log(`worker bundle: ${bundle.bytes} bytes raw, ${bundle.gzipBytes} bytes gzip (-9)`);
  });

  it("/health reaches Valkey through the REST bridge", async () => {
    const res = await mf.dispatchFetch("http://edge/health");
    const body = (await res.json()) as any;
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.ok).toBe(true);
    expect(body.valkey.reachable).toBe(true);
    expect(body.valkey.version).toMatch(/^\d+\.\d+/);
  });

  it("a signed POST /stages/:name runs the handler; an unsigned one gets 401 and runs nothing", async () => {
    const stage = pipeline.entry;
    const envelope = newEnvelope(stage, samplePayloads(pipeline, 1).payloads[0]);
    const body = JSON.stringify({ envelopes: [envelope] });
    const keysWritten = async () => (await valkey.conn.keys(`${keyPrefix}:*`)).length;

    const before = await keysWritten();
    const unsigned = await mf.dispatchFetch(`http://edge/stages/${stage}`, { method: "POST", headers: { "content-type": "application/json" }, body });
    expect(unsigned.status).toBe(401);
    const forged = await mf.dispatchFetch(`http://edge/stages/${stage}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(await signStageRequest({ kid: signingKey.kid, secret: "not-the-real-secret-000" }, "POST", `/stages/${stage}`, body)) },
      body,
    });
    expect(forged.status).toBe(401);
    expect(await keysWritten()).toBe(before);

    const signedHeaders = { "content-type": "application/json", ...(await signStageRequest(signingKey, "POST", `/stages/${stage}`, body)) };
    const signed = await mf.dispatchFetch(`http://edge/stages/${stage}`, { method: "POST", headers: signedHeaders, body });
    const answer = (await signed.json()) as any;
    // The same signed request again: its nonce is spent (remembered in Valkey through the bridge), nothing runs.
    const replayed = await mf.dispatchFetch(`http://edge/stages/${stage}`, { method: "POST", headers: signedHeaders, body });
    expect(replayed.status).toBe(409);
    expect(((await replayed.json()) as any).error.code).toBe("replayed");
    expect(signed.status, JSON.stringify(answer)).toBe(200);
    expect(answer.results[0], JSON.stringify(answer)).toMatchObject({ ok: true, status: "completed" });
    const next = pipeline.stages.get(stage)!.next;
    if (next.length > 0) expect(answer.results[0].outputs[0]).toMatchObject({ stage: next[0], runId: envelope.runId });
    // The handler reached Valkey through the bridge (news: dedupe marker, article, feed id).
    if (pipeline.name === "news") expect(await keysWritten()).toBeGreaterThan(before);
  });

  it("with no API_TOKEN the deployed Worker refuses writes (403) unless ALLOW_OPEN_WRITES=on; with a token it requires it", async () => {
    const article = JSON.stringify({ articles: [{ title: "Open writes", body: "Should a Worker without a token take this?" }] });
    const write = (worker: Miniflare, headers: Record<string, string> = {}) =>
      worker.dispatchFetch("http://edge/v1/articles", { method: "POST", headers: { "content-type": "application/json", ...headers }, body: article });
    const keysWritten = async () => (await valkey.conn.keys(`${keyPrefix}:*`)).length;
    const before = await keysWritten();
    const refused = await write(mf);
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as any).error).toMatchObject({ code: "writes_disabled", message: expect.stringMatching(/API_TOKEN.*ALLOW_OPEN_WRITES=on/) });
    for (const [method, path] of [["PUT", "/v1/users/u1"], ["POST", "/v1/runs"], ["POST", "/v1/dead-letters/redrive"]]) {
      expect((await mf.dispatchFetch(`http://edge${path}`, { method, headers: { "content-type": "application/json" }, body: "{}" })).status, path).toBe(403);
    }
    expect(await keysWritten()).toBe(before);
    // Reads still answer.
    expect((await mf.dispatchFetch("http://edge/v1/topics")).status).toBe(200);

    const variants = async (extra: Record<string, string>) =>
      new Miniflare({
        modules: [{ type: "ESModule", path: bundle.scriptPath }],
        modulesRoot: dirname(bundle.scriptPath),
        compatibilityDate: compatibilityDateFromWranglerToml(),
        bindings: { ...varsFromWranglerToml(), KEY_PREFIX: keyPrefix, UPSTASH_REDIS_REST_URL: bridge.url, UPSTASH_REDIS_REST_TOKEN: bridge.token, ...extra },
      });
    const open = await variants({ ALLOW_OPEN_WRITES: "on" });
    const tokened = await variants({ API_TOKEN: "a-real-token-123" });
    try {
      expect((await write(open)).status).toBe(202);
      expect((await write(tokened)).status).toBe(401);
      expect((await write(tokened, { authorization: "Bearer a-real-token-123" })).status).toBe(202);
    } finally {
      await open.dispose();
      await tokened.dispose();
    }
  });

  it("the cron trigger reaches the bundle's scheduled handler", async () => {
    // Miniflare's Fetcher type omits scheduled(); the runtime object has it.
    const worker = (await mf.getWorker()) as unknown as { scheduled(options: { cron: string }): Promise<{ outcome: string }> };
    const result = await worker.scheduled({ cron: "*/5 * * * *" });
    expect(result.outcome).toBe("ok");
  });

  it("the cron trigger moves due delayed runs to their stream in workerd, each once", async () => {
    // This Worker refuses writes (no API_TOKEN): the delayed run is started from Node, moved by the Worker's cron.
    // Due 1 s ahead: a run due by the time the enqueue script runs (a loaded machine) starts at once instead of waiting.
    const runAt = Date.now() + 1000;
    const runIds = await startRuns(valkey.redis, [{ title: "Later", body: "b" }], { keys: createKeys({ prefix: keyPrefix }), pipeline, runAt });
    const runKey = `${keyPrefix}:{p0}:run:${runIds[0]}`;
    expect(await valkey.conn.hget(runKey, "status")).toBe("delayed");
    await new Promise((r) => setTimeout(r, Math.max(0, runAt - Date.now()) + 20));
    const stream = `${keyPrefix}:{p0}:s:fetcher`;
    const before = await valkey.conn.xlen(stream);
    const worker = (await mf.getWorker()) as unknown as { scheduled(options: { cron: string }): Promise<{ outcome: string }> };
    expect((await worker.scheduled({ cron: "*/5 * * * *" })).outcome).toBe("ok");
    expect((await worker.scheduled({ cron: "*/5 * * * *" })).outcome).toBe("ok");
    expect(await valkey.conn.hget(runKey, "status")).toBe("running");
    expect(await valkey.conn.xlen(stream)).toBe(before + 1);
  });
});
