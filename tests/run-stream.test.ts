/**
 * A run's streamed output, end to end: the news enricher with LLM_SUMMARY=on
 * streams the tokens of a fake OpenAI-compatible server (started here, SSE
 * `data:` lines, held mid-answer by the test) into the run's output stream;
 * a client of GET /v1/runs/:runId/stream drops mid-stream, reconnects with
 * Last-Event-ID and gets exactly the chunks it missed, then the live ones,
 * then `end`. In-process (npm start's path) and through workerd.
 */
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { settingsFor } from "../functions/config";
import { randomHex } from "../functions/envelope";
import { readArticle } from "../functions/news/articles";
import { NewsSettings } from "../functions/news/config";
import { app, pipeline } from "../functions/news/index";
import { redisFromEnv, type AppEnv } from "../functions/redis";
import { readRunOutput, RUN_STREAM_TTL_SECONDS } from "../functions/run-stream";
import { loadConfig } from "../worker-host/config";
import { startHttpModeStack, type HttpModeStack } from "../worker-host/http-mode";
import { startRuntime, type Runtime } from "../worker-host/runtime";
import { newsWorkerBundle } from "./helpers/news-bundle";
import { openSse } from "./helpers/sse";
import { eventually, startTestValkey, type TestValkey } from "./helpers/valkey";

const FIRST = 5; // tokens sent before the first hold
const MISSED = 7; // tokens sent while the client is away
const LIVE = 6; // tokens sent after it reconnected
const MODEL = "fake-summary-model";

/** A fake OpenAI-compatible chat endpoint that streams tokens and holds at two gates the test opens. */
interface FakeLlm {
  url: string;
  requests: Array<{ model: string; stream: boolean; title: string }>;
  /** Opens the next gate of the current answer. */
  release(): void;
  close(): Promise<void>;
}

async function startFakeLlm(): Promise<FakeLlm> {
  const requests: FakeLlm["requests"] = [];
  let gates: Array<() => void> = [];
  let pendingOpen = 0;
  const gate = () =>
    new Promise<void>((resolve) => {
      if (pendingOpen > 0) {
        pendingOpen--;
        resolve();
      } else gates.push(resolve);
    });
  const server: Server = createServer(async (req, res) => {
    let raw = "";
    for await (const part of req) raw += part;
    const body = JSON.parse(raw) as { model: string; stream: boolean; messages: Array<{ content: string }> };
    const n = requests.push({ model: body.model, stream: body.stream, title: body.messages[1]?.content.split("\n")[0] ?? "" });
    res.writeHead(200, { "content-type": "text/event-stream" });
    const send = (i: number) => res.write(`data: ${JSON.stringify({ id: `c${n}`, object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: `t${i} ` } }] })}\n\n`);
    let i = 0;
    for (; i < FIRST; i++) send(i);
    await gate();
    for (; i < FIRST + MISSED; i++) send(i);
    await gate();
    for (; i < FIRST + MISSED + LIVE; i++) {
      send(i);
      await new Promise((r) => setTimeout(r, 10));
    }
    res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\ndata: [DONE]\n\n`);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    requests,
    release() {
      const next = gates.shift();
      if (next) next();
      else pendingOpen++;
    },
    close: () => {
      gates.forEach((g) => g());
      gates = [];
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

let valkey: TestValkey;
let llm: FakeLlm;
let inProcess: Runtime;
let http: HttpModeStack;
const quiet = () => {};

function configFor(prefix: string, extra: Record<string, string> = {}) {
  return loadConfig(
    { VALKEY_URL: valkey.url, PORT: "0", HOST: "127.0.0.1", DEMO: "off", KEY_PREFIX: prefix, BLOCK_MS: "100", RETRY_BACKOFF_MS: "50", LLM_SUMMARY: "on", LLM_SUMMARY_BASE_URL: llm.url, LLM_SUMMARY_MODEL: MODEL, ...extra },
    { appSettings: NewsSettings },
  );
}

beforeAll(async () => {
  const [v, bundle, fake] = await Promise.all([startTestValkey(), newsWorkerBundle(), startFakeLlm()]);
  valkey = v;
  llm = fake;
  inProcess = await startRuntime({ config: configFor(`stip${randomHex(3)}`), pipeline, app, log: quiet });
  http = await startHttpModeStack({
    config: configFor(`sthm${randomHex(3)}`, { UPSTASH_REDIS_REST_URL: "http://127.0.0.1:0" }),
    pipeline,
    workerd: { kind: "miniflare", scriptPath: bundle.scriptPath },
    log: quiet,
  });
}, 180_000);

afterAll(async () => {
  await llm?.close();
  await http?.close();
  await inProcess?.close();
  await valkey?.stop();
});

async function ingest(baseUrl: string, title: string): Promise<string> {
  const res = await fetch(`${baseUrl}/v1/articles`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ articles: [{ title, body: "Rates rose again as the central bank met; markets fell and then recovered by the close." }] }) });
  expect(res.status).toBe(202);
  return ((await res.json()) as { runIds: string[] }).runIds[0];
}

async function runOf(baseUrl: string, runId: string): Promise<any> {
  return (await fetch(`${baseUrl}/v1/runs/${runId}`)).json();
}

const modes = [
  ["npm start (in-process)", () => ({ url: inProcess.url, env: inProcess.env })],
  ["workerd (HTTP mode)", () => ({ url: http.url, env: http.env })],
] as const;

describe.each(modes)("streamed run output: %s", (_mode, target) => {
  it("a client that drops mid-stream and reconnects with Last-Event-ID gets exactly the missed chunks, then the live ones, then end", async () => {
    const { url, env } = target();
    const { keys } = settingsFor(env as AppEnv);
    const redis = redisFromEnv(env as AppEnv);
    const before = llm.requests.length;
    const title = `Central bank story ${randomHex(4)}`;
    const runId = await ingest(url, title);

    const first = await openSse(`${url}/v1/runs/${runId}/stream`);
    expect(first.status).toBe(200);
    expect(first.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const firstChunks = await first.next(FIRST, "chunk", 60_000);
    expect(firstChunks.map((e) => JSON.parse(e.data))).toEqual(Array.from({ length: FIRST }, (_, i) => ({ stage: "enricher", attempt: 1, chunk: `t${i} ` })));
    const lastSeen = first.lastEventId()!;
    expect(lastSeen).toBe(firstChunks[FIRST - 1].id);
    first.close();

    // While the client is away, the model sends MISSED more tokens (they reach the run's stream).
    llm.release();
    await eventually(async () => ((await readRunOutput(redis, keys, runId)).length === FIRST + MISSED ? true : undefined), { timeoutMs: 30_000 });
    expect(llm.requests[before]).toMatchObject({ model: MODEL, stream: true, title: `Title: ${title}` });

    const again = await openSse(`${url}/v1/runs/${runId}/stream`, { lastEventId: lastSeen });
    expect(again.status).toBe(200);
    const missed = await again.next(MISSED, "chunk", 30_000);
    expect(missed.map((e) => JSON.parse(e.data).chunk)).toEqual(Array.from({ length: MISSED }, (_, i) => `t${FIRST + i} `));
    // Then the rest, live, and the end once the enricher's step has committed.
    llm.release();
    const live = await again.next(LIVE, "chunk", 30_000);
    expect(live.map((e) => JSON.parse(e.data).chunk)).toEqual(Array.from({ length: LIVE }, (_, i) => `t${FIRST + MISSED + i} `));
    const [end] = await again.next(1, "end", 30_000);
    expect(JSON.parse(end.data)).toMatchObject({ runId, stages: ["enricher"] });
    // Nothing twice, nothing skipped: the second connection's chunks are exactly the stream's entries after lastSeen.
    const stored = await readRunOutput(redis, keys, runId);
    expect(stored).toHaveLength(FIRST + MISSED + LIVE);
    const secondIds = again.seen.filter((e) => e.event === "chunk").map((e) => e.id);
    expect(secondIds).toEqual(stored.slice(FIRST).map((s) => s.id));
    expect(again.seen.filter((e) => e.event === "end")).toHaveLength(1);
    again.close();

    // The step committed after its chunks, with the model's text as the stored summary.
    const run = await eventually(async () => {
      const r = await runOf(url, runId);
      return r.status === "completed" ? r : undefined;
    }, { timeoutMs: 30_000 });
    const enricher = run.steps.find((s: any) => s.stage === "enricher");
    expect(enricher.result.summaryBy).toBe(MODEL);
    const article = await readArticle(redis, keys, enricher.result.feedId);
    expect(article?.summary).toBe(stored.map((s) => s.chunk).join("").trim());
    // Bounded: the output stream expires.
    const ttl = Number(await redis.ttl(keys.runOutput(runId)));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(RUN_STREAM_TTL_SECONDS);

    // A reconnect after the end replays from its id and ends at once.
    const late = await openSse(`${url}/v1/runs/${runId}/stream`, { lastEventId: stored[FIRST + MISSED].id });
    const tail = await late.next(LIVE - 1, "chunk", 30_000);
    expect(tail.map((e) => e.id)).toEqual(stored.slice(FIRST + MISSED + 1).map((s) => s.id));
    await late.next(1, "end", 30_000);
    late.close();
  }, 180_000);

  it("answers 404 for an unknown run and 400 for a Last-Event-ID it never sent", async () => {
    const { url } = target();
    const missing = await fetch(`${url}/v1/runs/r0nosuchrun0/stream`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as any).error.code).toBe("not_found");
    const bad = await fetch(`${url}/v1/runs/r0nosuchrun0/stream`, { headers: { "last-event-id": "not-an-id" } });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error.code).toBe("validation_failed");
  }, 60_000);
});
