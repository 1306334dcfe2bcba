/**
 * End to end through workerd: the same runs of the app's pipeline (the news
 * pipeline: real AG News items, demo subscribers), once in-process (npm
 * start's path) and once in HTTP mode (worker-host -> signed HTTP -> the built
 * bundle in Miniflare -> @upstash/redis -> REST bridge -> Valkey), must end
 * with the same checkpoints, step results, dead letters and feeds, and the
 * public API must answer from workerd as it does under npm start.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { settingsFor } from "../functions/config";
import { listDeadLetters } from "../functions/dead-letters";
import { randomHex } from "../functions/envelope";
import { app, pipeline } from "../functions/news/index";
import { demoUid } from "../functions/news/users";
import { redisFromEnv, type AppEnv } from "../functions/redis";
import { readRun, startRuns } from "../functions/runs";
import { loadConfig } from "../worker-host/config";
import { startHttpModeStack, type HttpModeStack } from "../worker-host/http-mode";
import { startRuntime, type Runtime } from "../worker-host/runtime";
import { prepareSampleWorld, samplePayloads } from "../worker-host/news/sample-work";
import { newsWorkerBundle } from "./helpers/news-bundle";
import { eventually, startTestValkey, type TestValkey } from "./helpers/valkey";
import { openSse } from "./helpers/sse";
import { setInterests } from "../functions/news/users";
import { storeArticle } from "../functions/news/articles";
import { fanOutToBucket } from "../functions/news/fan-out";
import { NewsSettings } from "../functions/news/config";

const ITEMS = 120;
const USERS = 40;

let valkey: TestValkey;
let inProcess: Runtime;
let http: HttpModeStack;
const quiet = () => {};
const sample = samplePayloads(pipeline, ITEMS);
// Three exact copies at the end: dedupe must skip them the same way in both modes.
const payloads = [...sample.payloads, ...sample.payloads.slice(0, 3)];
const runIds = payloads.map((_, i) => `e2e-${i}-${randomHex(3)}`);

function configFor(prefix: string, extra: Record<string, string> = {}) {
  return loadConfig({ VALKEY_URL: valkey.url, PORT: "0", HOST: "127.0.0.1", DEMO: "off", KEY_PREFIX: prefix, BLOCK_MS: "100", RETRY_BACKOFF_MS: "50", BATCH_SIZE: "20", FEED_CAP: "100000", ...extra }, { appSettings: NewsSettings });
}

beforeAll(async () => {
  const [v, bundle] = await Promise.all([startTestValkey(), newsWorkerBundle()]);
  valkey = v;
  inProcess = await startRuntime({ config: configFor(`ip${randomHex(3)}`), pipeline, app, log: quiet });
  http = await startHttpModeStack({
    config: configFor(`hm${randomHex(3)}`, { UPSTASH_REDIS_REST_URL: "http://127.0.0.1:0", SSE_POLL_MS: "100" }),
    pipeline,
    workerd: { kind: "miniflare", scriptPath: bundle.scriptPath },
    log: quiet,
  });
  await Promise.all([prepareSampleWorld(pipeline, inProcess.env, { users: USERS }), prepareSampleWorld(pipeline, http.env, { users: USERS })]);
});

afterAll(async () => {
  await http?.close();
  await inProcess?.close();
  await valkey?.stop();
});

/** Drops what legitimately differs between two runs of the same work: the order-minted compact feed ids. */
function withoutFeedIds(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutFeedIds);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).filter(([k]) => k !== "feedId").map(([k, v]) => [k, withoutFeedIds(v)]));
  return value;
}

/** Reads a user's whole feed through the public API of `baseUrl`. */
async function feedOf(baseUrl: string, uid: string): Promise<unknown[]> {
  const items: Array<Record<string, unknown>> = [];
  let cursor: string | null = null;
  do {
    const res = await fetch(`${baseUrl}/v1/feeds/${uid}?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    expect(res.status).toBe(200);
    const page = (await res.json()) as { items: Array<Record<string, unknown>>; nextCursor: string | null };
    items.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  // Fan-out order (and so feed order) depends on batch timing; the content must not.
  return items.map(({ id: _id, ...rest }) => rest).sort((a, b) => String(a.runId).localeCompare(String(b.runId)));
}

/** What the work ended with: runs, dead letters, and (news) every user's feed and the topic counts. */
async function snapshot(env: AppEnv, baseUrl: string) {
  const { keys } = settingsFor(env);
  const redis = redisFromEnv(env);
  const runs = await Promise.all(
    runIds.map(async (runId) => {
      const run = await readRun(redis, keys, pipeline, runId);
      return {
        status: run?.status,
        step: run?.step,
        steps: run?.steps.map((s) => withoutFeedIds({ stage: s.stage, status: s.status, result: s.result, error: s.error })),
        log: run?.log.map((l) => `${l.stage}:${l.event}`),
      };
    }),
  );
  const deadLetters = (await listDeadLetters(redis, keys, pipeline, { limit: 1000 })).map((d) => ({ stage: d.stage, error: d.error, runId: (d.envelope as { runId?: string })?.runId }));
  if (pipeline.name !== "news") return { runs, deadLetters };
  const feeds = await Promise.all(Array.from({ length: USERS }, (_, i) => feedOf(baseUrl, demoUid(i + 1))));
  const topics = (await (await fetch(`${baseUrl}/v1/topics`)).json()) as unknown;
  return { runs, deadLetters, feeds, topics };
}

async function runAll(env: AppEnv, baseUrl: string) {
  const { keys, settings } = settingsFor(env);
  await startRuns(redisFromEnv(env), payloads, { keys, pipeline, runIds, ttlSeconds: settings.CHECKPOINT_TTL_SECONDS });
  await eventually(
    async () => {
      const pipe = valkey.conn.pipeline();
      for (const id of runIds) pipe.hget(keys.run(id), "status");
      return ((await pipe.exec()) ?? []).every(([, s]) => s !== "running");
    },
    { timeoutMs: 40_000, stepMs: 50 },
  );
  return snapshot(env, baseUrl);
}

describe(`edge path end to end: pipeline "${pipeline.name}" through workerd with HTTP dispatch`, () => {
  it(`HTTP mode ends exactly like the in-process run (${ITEMS} items from ${sample.source})`, async () => {
    const viaProcess = await runAll(inProcess.env, inProcess.url);
    const viaHttp = await runAll(http.env, http.url);
    expect(viaHttp).toEqual(viaProcess);
    // The HTTP side really went over HTTP to workerd.
    expect(http.invoker.stats.requests).toBeGreaterThan(0);
    expect(http.invoker.stats.envelopes).toBeGreaterThanOrEqual(payloads.length);
    expect(http.invoker.stats.failures).toBe(0);
    // And the outcome is real work, not two equal empties.
    const finished = viaHttp.runs.filter((r) => r.status === "completed" || r.status === "skipped");
    expect(finished).toHaveLength(payloads.length);
    expect(viaHttp.runs.slice(ITEMS).map((r) => r.status)).toEqual(["skipped", "skipped", "skipped"]);
    if ("feeds" in viaHttp) {
      const delivered = (viaHttp.feeds as unknown[][]).reduce((n, f) => n + f.length, 0);
      expect(delivered).toBeGreaterThan(USERS);
      console.log(`[edge-e2e] ${viaHttp.runs.filter((r) => r.status === "completed").length} articles completed, ${delivered} feed entries across ${USERS} users, identical in both modes`);
    }
  });

  it("the public API answers from workerd as under npm start", async () => {
    const [a, b] = await Promise.all([fetch(`${http.url}/health`), fetch(`${inProcess.url}/health`)]);
    const [ha, hb] = (await Promise.all([a.json(), b.json()])) as any[];
    expect(a.status).toBe(200);
    expect(ha.valkey).toEqual(hb.valkey);
    expect(ha.pipeline).toEqual(hb.pipeline);
    const start = { payloads: [sample.payloads[5]] };
    const started = await fetch(`${http.url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(start) });
    expect(started.status).toBe(202);
    const { runIds: [runId] } = (await started.json()) as { runIds: string[] };
    const run = await eventually(async () => {
      const body = (await (await fetch(`${http.url}/v1/runs/${runId}`)).json()) as any;
      return body.status !== "running" ? body : null;
    });
    expect(run.steps.length).toBeGreaterThan(0);
    const stats = (await (await fetch(`${http.url}/v1/stats`)).json()) as any;
    expect(stats.stages.map((s: any) => s.name)).toEqual([...pipeline.stages.keys()]);
    const bad = await fetch(`${http.url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads: [] }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error.code).toBe("validation_failed");
  });

  it("workerd refuses unsigned stage calls (the host's own calls are signed)", async () => {
    const res = await fetch(`${http.url}/stages/${pipeline.entry}`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(res.status).toBe(401);
  });

  it.runIf(pipeline.name === "news")("live feed events (SSE) stream from workerd, polling through the bridge", async () => {
    const { keys } = settingsFor(http.env);
    const redis = redisFromEnv(http.env);
    const uid = `sse${randomHex(3)}`;
    await setInterests(redis, keys, uid, ["sports"]);
    const deliver = async (title: string) => {
      const id = Number(await valkey.conn.incr(keys.articleSeq())).toString(36);
      await storeArticle(redis, keys, { id, runId: `run-${id}`, title, summary: `${title} summary`, topic: "sports", keywords: ["edge"] }, "body", 3600);
      await fanOutToBucket(redis, keys, id, "sports", keys.bucketOf(uid), { feedCap: 1000, markerTtlSeconds: 3600 });
      return id;
    };
    const stream = await openSse(`${http.url}/v1/feeds/${uid}/events`);
    try {
      expect(stream.status).toBe(200);
      expect(stream.headers.get("content-type")).toContain("text/event-stream");
      await eventually(() => stream.lastEventId() !== undefined);
      const ids = [await deliver("edge live 1"), await deliver("edge live 2")];
      const events = await stream.next(2);
      expect(events.map((e) => e.id)).toEqual(ids);
      expect(events.map((e) => JSON.parse(e.data).title)).toEqual(["edge live 1", "edge live 2"]);
    } finally {
      stream.close();
    }
  });
});
