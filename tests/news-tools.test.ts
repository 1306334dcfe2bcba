/**
 * The news pipeline's external tools against real local HTTP servers: the
 * cron trigger ingesting FEED_URLS (RSS through the tool cache), and the
 * optional LLM classifier on an OpenAI-compatible endpoint (through the tool
 * cache, falling back to the offline model when the endpoint fails).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomHex, newEnvelope } from "../functions/envelope";
import { scheduled, pipeline } from "../functions/news/index";
import { settingsFor } from "../functions/config";
import { runStageBatch } from "../functions/stage-route";
import type { AppEnv } from "../functions/redis";
import { startRuns } from "../functions/runs";
import { readStats } from "../functions/stats";
import { app as newsApp } from "../functions/news/index";
import { WorkerHost } from "../worker-host/host";
import { InProcessInvoker } from "../worker-host/invoker";
import { eventually, startTestValkey, type TestValkey } from "./helpers/valkey";

let v: TestValkey;
beforeAll(async () => {
  v = await startTestValkey();
});
afterAll(async () => {
  await v?.stop();
});

async function serve(handler: (req: IncomingMessage, body: string, res: ServerResponse) => void): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => handler(req, body, res));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, close: () => new Promise((r) => server.close(() => r())) };
}

const envFor = (extra: Partial<AppEnv> = {}): AppEnv => ({ REDIS: v.redis, KEY_PREFIX: `x${randomHex(4)}`, ...extra });

describe("cron trigger", () => {
  it("ingests every item of the feeds in FEED_URLS, fetching each feed once per cache TTL", async () => {
    let hits = 0;
    const feed = await serve((_req, _body, res) => {
      hits++;
      res.writeHead(200, { "content-type": "application/atom+xml" }).end(`<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Local</title>
        <entry><title>Rocket lands on barge</title><link href="https://example.org/1"/><summary>It landed.</summary></entry>
        <entry><title>Team wins cup final</title><link href="https://example.org/2"/><summary>Fans cheered.</summary></entry></feed>`);
    });
    const env = envFor({ FEED_URLS: `${feed.url}/atom.xml, not-a-url` });
    const { keys } = settingsFor(env);
    await scheduled({}, env);
    await scheduled({}, env);
    expect(hits).toBe(1);
    // Both polls start runs; the fetcher's dedupe drops the repeats downstream.
    const entries = await v.conn.xrange(keys.stream("fetcher", 0), "-", "+");
    const titles = entries.map(([, f]) => JSON.parse(f[1]).payload.title);
    expect(titles).toEqual(["Rocket lands on barge", "Team wins cup final", "Rocket lands on barge", "Team wins cup final"]);
    await feed.close();
  });
});

describe("LLM classifier", () => {
  const article = { feedId: "k1", title: "Parliament passes the budget", body: "Lawmakers voted late on Tuesday." };

  it("asks the configured endpoint once per article (tool cache) and uses its topic", async () => {
    const requests: any[] = [];
    const llm = await serve((req, body, res) => {
      requests.push({ path: req.url, auth: req.headers.authorization, body: JSON.parse(body) });
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ choices: [{ message: { content: "Education." } }] }));
    });
    const env = envFor({ LLM_BASE_URL: `${llm.url}/v1`, LLM_API_KEY: "k-123", LLM_MODEL: "tiny" });
    const run = () => runStageBatch(pipeline, "classifier", env, [newEnvelope("classifier", article)]);
    const [first] = await run();
    const [second] = await run();
    expect(first.ok && first.outputs[0].payload).toMatchObject({ topic: "education" });
    expect(first.ok && first.result).toMatchObject({ topic: "education", model: "openai:tiny", cacheHit: false });
    expect(second.ok && second.result).toMatchObject({ topic: "education", cacheHit: true });
    expect(requests).toHaveLength(1);
    expect(requests[0]).toMatchObject({ path: "/v1/chat/completions", auth: "Bearer k-123", body: { model: "tiny" } });
    await llm.close();
  });

  it("falls back to the offline model when the endpoint fails, and says so in the checkpoint", async () => {
    const llm = await serve((_req, _body, res) => res.writeHead(503).end("overloaded"));
    const env = envFor({ LLM_BASE_URL: llm.url, LLM_MODEL: "tiny" });
    const [r] = await runStageBatch(pipeline, "classifier", env, [newEnvelope("classifier", article)]);
    expect(r.ok).toBe(true);
    expect(r.ok && r.result).toMatchObject({ model: "offline-lexicon", llmError: expect.stringContaining("503") });
    await llm.close();
  });

  it("reports the tokens the endpoint used to the stage's budget (none on a cache hit)", async () => {
    const llm = await serve((_req, _body, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ choices: [{ message: { content: "sports" } }], usage: { total_tokens: 42 } })));
    const env = envFor({ LLM_BASE_URL: llm.url, LLM_MODEL: "tiny" });
    const run = () => runStageBatch(pipeline, "classifier", env, [newEnvelope("classifier", { ...article, title: "Cup final tonight" })]);
    const [first] = await run();
    const [second] = await run();
    expect(first.ok && first.cost).toBe(42);
    expect(second.ok && second.cost).toBe(0);
    await llm.close();
  });

  it("throttles the classifier per source by LLM_TOKENS_PER_MINUTE on the worker-host, and lets every article through in the end", async () => {
    let calls = 0;
    const llm = await serve((_req, _body, res) => {
      calls++;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ choices: [{ message: { content: "sports" } }], usage: { total_tokens: 40 } }));
    });
    // 3000 a minute: 300 tokens at once, then 50 a second; each article is estimated at ~60 tokens.
    const env = envFor({ LLM_BASE_URL: llm.url, LLM_MODEL: "tiny", LLM_TOKENS_PER_MINUTE: "3000" });
    const { keys } = settingsFor(env);
    const host = new WorkerHost({ pipeline, keys, conn: v.conn, invoker: new InProcessInvoker(newsApp, env), env, stages: ["classifier"], tuning: { blockMs: 200, visibilityMs: 2000, reclaimIntervalMs: 100 } });
    await host.run();
    try {
      const articles = Array.from({ length: 10 }, (_, i) => ({ feedId: `k${i + 10}`, title: `Match report number ${i}`, body: "The home side won after extra time.", source: "wire" }));
      await startRuns(v.redis, articles, { keys, pipeline, stage: "classifier" });
      await eventually(async () => (await readStats(v.redis, keys, pipeline)).stages.find((s) => s.name === "classifier")!.processed === 10, { timeoutMs: 30_000 });
      const stats = (await readStats(v.redis, keys, pipeline)).stages.find((s) => s.name === "classifier")!;
      expect(calls).toBe(10);
      expect(stats.flow.throttled).toBeGreaterThan(0);
      expect(stats.flow.readmitted).toBe(stats.flow.throttled);
      expect(stats.deadLettered).toBe(0);
    } finally {
      await host.close();
      await llm.close();
    }
  });

  it("stays offline when no LLM is configured", async () => {
    const [r] = await runStageBatch(pipeline, "classifier", envFor(), [newEnvelope("classifier", article)]);
    expect(r.ok && r.result).toMatchObject({ model: "offline-lexicon" });
  });
});
