/**
 * End to end through workerd: the same runs, once in-process (npm start's
 * path) and once in HTTP mode (worker-host -> signed HTTP -> the built bundle
 * in Miniflare -> REST bridge -> Valkey), must end with exactly the same
 * checkpoints, step results, dead letters and handler side effects.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { settingsFor } from "../functions/config";
import { listDeadLetters } from "../functions/dead-letters";
import { randomHex } from "../functions/envelope";
import { app, pipeline } from "../functions/index";
import { redisFromEnv, type AppEnv } from "../functions/redis";
import { readRun, startRuns } from "../functions/runs";
import { loadConfig } from "../worker-host/config";
import { startHttpModeStack, type HttpModeStack } from "../worker-host/http-mode";
import { startRuntime, type Runtime } from "../worker-host/runtime";
import { buildWorkerBundle } from "../worker-host/worker-bundle";
import { eventually, startTestValkey, type TestValkey } from "./helpers/valkey";

let valkey: TestValkey;
let inProcess: Runtime;
let http: HttpModeStack;
const outdir = mkdtempSync(join(tmpdir(), "edgepipe-e2e-"));
const quiet = () => {};

function configFor(prefix: string, extra: Record<string, string> = {}) {
  return loadConfig({ VALKEY_URL: valkey.url, PORT: "0", HOST: "127.0.0.1", DEMO: "off", KEY_PREFIX: prefix, BLOCK_MS: "100", RETRY_BACKOFF_MS: "50", BATCH_SIZE: "20", ...extra });
}

beforeAll(async () => {
  const [v, bundle] = await Promise.all([startTestValkey(), buildWorkerBundle({ outdir })]);
  valkey = v;
  inProcess = await startRuntime({ config: configFor(`ip${randomHex(3)}`), pipeline, app, log: quiet });
  http = await startHttpModeStack({
    config: configFor(`hm${randomHex(3)}`, { UPSTASH_REDIS_REST_URL: "http://127.0.0.1:0" }),
    pipeline,
    workerd: { kind: "miniflare", scriptPath: bundle.scriptPath },
    log: quiet,
  });
});

afterAll(async () => {
  await http?.close();
  await inProcess?.close();
  await valkey?.stop();
  rmSync(outdir, { recursive: true, force: true });
});

/** The example pipeline's inputs: ordinary texts, whitespace-heavy ones, and one invalid payload. */
function examplePayloads(): unknown[] {
  const texts = Array.from({ length: 40 }, (_, i) => ({ text: `  run ${i}:  ${"word ".repeat(i % 7)}  the   end ` }));
  return [...texts, { text: "" }, { text: "ünïcode ✓ 🚀   spaced" }];
}

/** What a run ended with, minus timings and delivery details. */
async function snapshot(env: AppEnv, runIds: string[]) {
  const { keys } = settingsFor(env);
  const redis = redisFromEnv(env);
  const runs = await Promise.all(
    runIds.map(async (runId) => {
      const run = await readRun(redis, keys, pipeline, runId);
      return {
        status: run?.status,
        step: run?.step,
        steps: run?.steps.map((s) => ({ stage: s.stage, status: s.status, result: s.result, error: s.error })),
        log: run?.log.map((l) => `${l.stage}:${l.event}`),
      };
    }),
  );
  const deadLetters = (await listDeadLetters(redis, keys, pipeline, { limit: 1000 })).map((d) => ({ stage: d.stage, error: d.error, runId: (d.envelope as { runId?: string })?.runId }));
  // The example pipeline's side effect (wordcount's per-run word totals).
  const words = (await redis.hgetall<Record<string, unknown>>(`${keys.prefix}:example:words`)) ?? {};
  return { runs, deadLetters: deadLetters.sort((a, b) => String(a.runId).localeCompare(String(b.runId))), words };
}

async function runAll(env: AppEnv, runIds: string[], payloads: unknown[]) {
  const { keys, settings } = settingsFor(env);
  await startRuns(redisFromEnv(env), payloads, { keys, pipeline, runIds, ttlSeconds: settings.CHECKPOINT_TTL_SECONDS });
  await eventually(async () => {
    const views = await Promise.all(runIds.map((id) => readRun(redisFromEnv(env), keys, pipeline, id)));
    return views.every((v) => v && v.status !== "running");
  }, { timeoutMs: 30_000, stepMs: 50 });
  return snapshot(env, runIds);
}

describe("edge path end to end (workerd, HTTP dispatch)", () => {
  it("HTTP mode through workerd ends exactly like the in-process run", async () => {
    const payloads = examplePayloads();
    const runIds = payloads.map((_, i) => `e2e-${i}-${randomHex(3)}`);
    const [viaProcess, viaHttp] = await Promise.all([runAll(inProcess.env, runIds, payloads), runAll(http.env, runIds, payloads)]);
    expect(viaHttp).toEqual(viaProcess);
    // The HTTP side really went over HTTP to workerd.
    expect(http.invoker.stats.requests).toBeGreaterThan(0);
    expect(http.invoker.stats.envelopes).toBeGreaterThanOrEqual(payloads.length);
    // And the results are the real ones, not two equal empties.
    expect(viaHttp.runs.filter((r) => r.status === "completed"), JSON.stringify(viaHttp.runs.slice(0, 3))).toHaveLength(payloads.length - 1);
    expect(viaHttp.deadLetters).toHaveLength(1);
    expect(viaHttp.deadLetters[0].error).toMatch(/invalid payload/);
    expect(Object.keys(viaHttp.words)).toHaveLength(payloads.length - 1);
    expect(viaHttp.runs[3].steps?.[1]).toMatchObject({ stage: "wordcount", status: "completed", result: { words: 7 } });
  });

  it("the public API answers from workerd as under npm start", async () => {
    const [a, b] = await Promise.all([fetch(`${http.url}/health`), fetch(`${inProcess.url}/health`)]);
    const [ha, hb] = (await Promise.all([a.json(), b.json()])) as any[];
    expect(a.status).toBe(200);
    expect(ha.valkey).toEqual(hb.valkey);
    expect(ha.pipeline).toEqual(hb.pipeline);
    const started = await fetch(`${http.url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads: [{ text: " via   the  edge " }] }) });
    expect(started.status).toBe(202);
    const { runIds } = (await started.json()) as { runIds: string[] };
    const run = await eventually(async () => {
      const res = await fetch(`${http.url}/v1/runs/${runIds[0]}`);
      const body = (await res.json()) as any;
      return body.status === "completed" ? body : null;
    });
    expect(run.steps.map((s: any) => [s.stage, s.result])).toEqual([["normalize", { chars: 12 }], ["wordcount", { words: 3 }]]);
    const stats = (await (await fetch(`${http.url}/v1/stats`)).json()) as any;
    expect(stats.stages.map((s: any) => s.name)).toEqual([...pipeline.stages.keys()]);
    const bad = await fetch(`${http.url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads: [] }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error.code).toBe("validation_failed");
  });

  it("workerd refuses unsigned stage calls (the host's own calls are signed)", async () => {
    const res = await fetch(`${http.url}/stages/normalize`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(res.status).toBe(401);
  });
});
