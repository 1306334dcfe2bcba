/**
 * A workerd outage uses no delivery attempts (issue 10): a worker-host in
 * HTTP mode (HttpInvoker to the news app's Worker in workerd, through
 * Miniflare and the REST bridge) while workerd is stopped for longer than
 * every retry backoff of MAX_DELIVERIES together, then started again on the
 * same port. Dispatches that get no answer (connection refused) are retried
 * in place: /health names the stage and /metrics counts them while it lasts;
 * afterwards every run completes with each step at attempt 1, none
 * dead-lettered, and /health is 200 again.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listDeadLetters } from "../functions/dead-letters";
import { randomHex } from "../functions/envelope";
import { app, pipeline } from "../functions/news/index";
import { NewsSettings } from "../functions/news/config";
import { readRun, startRuns } from "../functions/runs";
import { settingsFor } from "../functions/config";
import { loadConfig } from "../worker-host/config";
import { startHttpModeStack, type HttpModeStack } from "../worker-host/http-mode";
import { startRuntime, type Runtime } from "../worker-host/runtime";
import { freePort } from "../worker-host/valkey-launcher";
import { newsWorkerBundle } from "./helpers/news-bundle";
import { eventually, startTestValkey, type TestValkey } from "./helpers/valkey";

let valkey: TestValkey;
let scriptPath: string;
let workerd: HttpModeStack | undefined;
let host: Runtime | undefined;
const prefix = `wo${randomHex(3)}`;
const signingKeys = `wo:${randomHex(16)}`;
const bridgeToken = `wo-bridge-${randomHex(12)}`;
let stagePort = 0;
let bridgePort = 0;
const lines: string[] = [];

/** workerd (Miniflare) with the REST bridge, no worker-host: started again on the same ports after the outage. */
async function startWorkerd(): Promise<HttpModeStack> {
  const config = loadConfig(
    { VALKEY_URL: valkey.url, PORT: String(stagePort), HOST: "127.0.0.1", DEMO: "off", KEY_PREFIX: prefix, UPSTASH_REDIS_REST_URL: `http://127.0.0.1:${bridgePort}`, UPSTASH_REDIS_REST_TOKEN: bridgeToken, STAGE_SIGNING_KEYS: signingKeys },
    { appSettings: NewsSettings },
  );
  return startHttpModeStack({ config, pipeline, workerd: { kind: "miniflare", scriptPath }, startHost: false, log: () => {} });
}

beforeAll(async () => {
  const [v, bundle] = await Promise.all([startTestValkey(), newsWorkerBundle()]);
  valkey = v;
  scriptPath = bundle.scriptPath;
  [stagePort, bridgePort] = [await freePort(), await freePort()];
  workerd = await startWorkerd();
  // npm start with STAGE_BASE_URL: its handlers are the Worker's, called over signed HTTP.
  const config = loadConfig(
    {
      VALKEY_URL: valkey.url, PORT: "0", HOST: "127.0.0.1", DEMO: "off", WEB_DIR: "", KEY_PREFIX: prefix, STAGE_BASE_URL: workerd.url, STAGE_SIGNING_KEYS: signingKeys,
      BLOCK_MS: "100", MAX_DELIVERIES: "3", RETRY_BACKOFF_MS: "100", VISIBILITY_TIMEOUT_MS: "3000",
    },
    { appSettings: NewsSettings },
  );
  const { HttpInvoker } = await import("../worker-host/http-invoker");
  host = await startRuntime({ config, pipeline, app, invoker: new HttpInvoker({ baseUrl: workerd.url, signingKeys, timeoutMs: 5000 }), log: (l) => lines.push(l) });
}, 120_000);

afterAll(async () => {
  await host?.close();
  await workerd?.close();
  await valkey?.stop();
});

let seq = 0;
const article = () => ({ url: `https://example.com/wo/${++seq}`, title: `Outage drill ${seq}: markets steady`, body: `Report ${seq} ${randomHex(4)}: shares closed higher after a volatile session, traders said.` });

describe("a workerd outage", () => {
  it("uses no delivery attempts: batches wait and retry until workerd is back, then every run completes at attempt 1", async () => {
    const { keys } = settingsFor(host!.env);
    const redis = valkey.redis;
    const before = await startRuns(redis, [article(), article()], { keys, pipeline });
    await eventually(async () => ((await Promise.all(before.map((id) => readRun(redis, keys, pipeline, id)))).every((r) => r?.status === "completed") ? true : null), { timeoutMs: 30_000, stepMs: 50 });

    await workerd!.close();
    workerd = undefined;
    const downAt = performance.now();
    const during = await startRuns(redis, Array.from({ length: 10 }, article), { keys, pipeline });
    // Down for longer than MAX_DELIVERIES' backoffs together (100 + 200 + 400 ms, reclaim after 3 s) would need.
    await new Promise((r) => setTimeout(r, 3000));
    const health = await fetch(`${host!.url}/health`, { signal: AbortSignal.timeout(10_000) });
    const body = (await health.json()) as { stuck?: Array<{ stage: string; reason: string }> };
    expect(health.status).toBe(503);
    expect(body.stuck?.[0]).toMatchObject({ stage: "fetcher" });
    expect(body.stuck?.[0].reason).toMatch(/stage endpoint gives no answer .*ECONNREFUSED.*no delivery attempt used/);
    const metrics = await (await fetch(`${host!.url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
    expect(metrics).toMatch(/edgepipe_host_dispatch_unavailable\{stage="fetcher"\} 1/);
    const failures = Number(/edgepipe_host_dispatch_transport_failures_total\{stage="fetcher"\} (\d+)/.exec(metrics)?.[1]);
    expect(failures).toBeGreaterThan(1);
    await new Promise((r) => setTimeout(r, Math.max(0, 6000 - (performance.now() - downAt))));

    workerd = await startWorkerd();
    const upAt = performance.now();
    await eventually(async () => ((await Promise.all(during.map((id) => readRun(redis, keys, pipeline, id)))).every((r) => r?.status === "completed") ? true : null), { timeoutMs: 60_000, stepMs: 50 });
    const recoveredMs = performance.now() - upAt;
    const views = await Promise.all(during.map((id) => readRun(redis, keys, pipeline, id)));
    const handled = views.flatMap((v) => v!.steps.filter((s) => pipeline.stages.has(s.stage)));
    expect(handled).toHaveLength(10 * pipeline.stages.size);
    expect(new Set(handled.map((s) => s.attempt))).toEqual(new Set([1]));
    for (const stage of pipeline.stages.keys()) expect(await listDeadLetters(redis, keys, pipeline, { stage })).toEqual([]);
    await eventually(async () => ((await fetch(`${host!.url}/health`)).status === 200 ? true : null), { timeoutMs: 10_000, stepMs: 100 });
    const after = await (await fetch(`${host!.url}/metrics`)).text();
    expect(after).toMatch(/edgepipe_host_dispatch_unavailable\{stage="fetcher"\} 0/);
    expect(lines.some((l) => /\[fetcher\] stage endpoint answers again/.test(l))).toBe(true);
    console.log(`workerd down ${((upAt - downAt) / 1000).toFixed(1)} s: ${failures} dispatches got no answer by 3 s; all 10 runs completed ${recoveredMs.toFixed(0)} ms after workerd was back, every step at attempt 1, 0 dead-lettered`);
  }, 120_000);
});
