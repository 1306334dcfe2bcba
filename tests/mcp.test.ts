/**
 * The MCP server at /mcp, driven by the SDK's own client over Streamable HTTP,
 * against the runtime `npm start` composes (in-process handlers) and against
 * the built Worker bundle in workerd (Miniflare, HTTP mode): list the tools,
 * set interests, start a news run, wait for it, read the feed it changed;
 * wrong or missing tokens refused, the read token limited to read tools,
 * invalid arguments answered as tool errors while the server keeps serving.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomHex } from "../functions/envelope";
import { NewsSettings } from "../functions/news/config";
import { app, pipeline } from "../functions/news/index";
import { TOPICS } from "../functions/news/classify";
import { loadConfig } from "../worker-host/config";
import { startHttpModeStack, type HttpModeStack } from "../worker-host/http-mode";
import { startRuntime, type Runtime } from "../worker-host/runtime";
import { newsWorkerBundle } from "./helpers/news-bundle";
import { startTestValkey, type TestValkey } from "./helpers/valkey";

const TOKEN = `write-${randomHex(8)}`;
const READ_TOKEN = `read-${randomHex(8)}`;
/** A small body limit, so the over-limit request is small too (a big one may be reset mid-upload once refused). */
const MAX_BODY = 16 * 1024;

let valkey: TestValkey;
let inProcess: Runtime;
let http: HttpModeStack;
const quiet = () => {};

function configFor(prefix: string, extra: Record<string, string> = {}) {
  return loadConfig(
    { VALKEY_URL: valkey.url, PORT: "0", HOST: "127.0.0.1", DEMO: "off", KEY_PREFIX: prefix, BLOCK_MS: "100", RETRY_BACKOFF_MS: "50", API_TOKEN: TOKEN, API_READ_TOKEN: READ_TOKEN, MAX_BODY_BYTES: String(MAX_BODY), ...extra },
    { appSettings: NewsSettings },
  );
}

beforeAll(async () => {
  const [v, bundle] = await Promise.all([startTestValkey(), newsWorkerBundle()]);
  valkey = v;
  inProcess = await startRuntime({ config: configFor(`mcpip${randomHex(3)}`), pipeline, app, log: quiet });
  http = await startHttpModeStack({
    config: configFor(`mcphm${randomHex(3)}`, { UPSTASH_REDIS_REST_URL: "http://127.0.0.1:0" }),
    pipeline,
    workerd: { kind: "miniflare", scriptPath: bundle.scriptPath },
    log: quiet,
  });
}, 180_000);

afterAll(async () => {
  await http?.close();
  await inProcess?.close();
  await valkey?.stop();
});

async function connect(baseUrl: string, token?: string): Promise<Client> {
  const client = new Client({ name: "edgepipe-test", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(`${baseUrl}/mcp`), token ? { requestInit: { headers: { Authorization: `Bearer ${token}` } } } : {});
  await client.connect(transport);
  return client;
}

type ToolAnswer = { isError?: boolean; content: Array<{ type: string; text?: string }>; structuredContent?: Record<string, any> };

async function call(client: Client, name: string, args: Record<string, unknown>): Promise<ToolAnswer> {
  return (await client.callTool({ name, arguments: args }, undefined, { timeout: 60_000 })) as ToolAnswer;
}

function ok(answer: ToolAnswer): Record<string, any> {
  if (answer.isError) throw new Error(`tool error: ${answer.content[0]?.text}`);
  expect(answer.structuredContent).toBeDefined();
  // The text part carries the same JSON (clients without structured output read it).
  expect(JSON.parse(answer.content[0].text!)).toEqual(answer.structuredContent);
  return answer.structuredContent!;
}

const modes = [
  ["npm start (in-process)", () => inProcess.url],
  ["workerd (HTTP mode)", () => http.url],
] as const;

describe.each(modes)("MCP over Streamable HTTP: %s", (_mode, urlOf) => {
  it("lists the tools with JSON Schemas, starts a news run, waits for it and reads the feed it changed", async () => {
    const client = await connect(urlOf(), TOKEN);
    try {
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name).sort();
      expect(names).toEqual(
        ["get_run", "list_dead_letters", "list_runs", "list_topics", "publish_articles", "read_feed", "read_stats", "redrive_dead_letters", "set_interests", "start_run", "wait_for_run"].sort(),
      );
      // start_run's payload is the entry stage's zod schema, as JSON Schema.
      const startRun = tools.find((t) => t.name === "start_run")!;
      const payload = (startRun.inputSchema.properties as any).payload;
      expect(payload.type).toBe("object");
      expect(payload.required).toEqual(expect.arrayContaining(["title", "body"]));
      expect(payload.properties.title).toMatchObject({ type: "string", minLength: 1, maxLength: 1000 });
      expect(tools.find((t) => t.name === "read_feed")!.annotations?.readOnlyHint).toBe(true);

      const uid = `mcp${randomHex(4)}`;
      expect(ok(await call(client, "set_interests", { uid, interests: [...TOPICS] }))).toEqual({ uid, interests: [...TOPICS] });
      expect(ok(await call(client, "read_feed", { uid })).items).toEqual([]);

      const title = `Chipmaker unveils faster processor for data centers ${randomHex(4)}`;
      const started = ok(await call(client, "start_run", { payload: { title, body: "The new chip doubles performance per watt for servers and AI workloads, the company said on Tuesday." } }));
      expect(started.runId).toMatch(/^r/);
      const run = ok(await call(client, "wait_for_run", { runId: started.runId, timeoutMs: 30_000 }));
      expect(run.finished).toBe(true);
      expect(run.status).toBe("completed");
      expect(run.steps.map((s: any) => s.stage)).toEqual(["ingest", "fetcher", "classifier", "enricher", "fanout"]);

      const feed = ok(await call(client, "read_feed", { uid, limit: 10 }));
      expect(feed.items).toHaveLength(1);
      expect(feed.items[0]).toMatchObject({ runId: started.runId, title });

      // publish_articles: several runs at once, in order; the feed grows by them.
      const published = ok(await call(client, "publish_articles", { articles: [1, 2].map((i) => ({ title: `Second story ${i} ${randomHex(4)}`, body: `Body of story ${i} about markets and rates.` })) }));
      expect(published.accepted).toBe(2);
      for (const runId of published.runIds) expect(ok(await call(client, "wait_for_run", { runId, timeoutMs: 30_000 })).status).toBe("completed");
      const after = ok(await call(client, "read_feed", { uid, limit: 10 }));
      expect(after.items.map((i: any) => i.runId)).toEqual([...published.runIds].reverse().concat(started.runId));

      const topics = ok(await call(client, "list_topics", {})).topics;
      expect(topics.map((t: any) => t.name).sort()).toEqual([...TOPICS].sort());
      const stats = ok(await call(client, "read_stats", {}));
      expect(stats.stages.find((s: any) => s.name === "fanout").processed).toBeGreaterThanOrEqual(3);
      const got = ok(await call(client, "get_run", { runId: started.runId }));
      expect(got.status).toBe("completed");
      expect(ok(await call(client, "list_runs", { limit: 5 })).items.map((r: any) => r.runId)).toContain(started.runId);
    } finally {
      await client.close();
    }
  }, 120_000);

  it("invalid arguments, unknown runs and unknown tools are tool errors, and the server keeps serving", async () => {
    const client = await connect(urlOf(), TOKEN);
    try {
      const bad = await call(client, "start_run", { payload: { title: "", body: 42 } });
      expect(bad.isError).toBe(true);
      expect(bad.content[0].text).toMatch(/invalid arguments for start_run: payload\.title: title must not be empty; payload\.body: /);
      const badWait = await call(client, "wait_for_run", { runId: "no such id!", timeoutMs: 999_999 });
      expect(badWait.isError).toBe(true);
      expect(badWait.content[0].text).toMatch(/runId/);
      expect(badWait.content[0].text).toMatch(/timeoutMs/);
      const missing = await call(client, "get_run", { runId: "r0unknown0run" });
      expect(missing).toMatchObject({ isError: true, content: [{ type: "text", text: "no run r0unknown0run (unknown or expired)" }] });
      const badStage = await call(client, "redrive_dead_letters", { stage: "nope" });
      expect(badStage.isError).toBe(true);
      const badCursor = await call(client, "read_feed", { uid: "u0001", cursor: "garbage" });
      expect(badCursor).toMatchObject({ isError: true });
      const unknown = await call(client, "drop_database", {});
      expect(unknown).toMatchObject({ isError: true });
      expect(unknown.content[0].text).toMatch(/unknown tool drop_database/);
      // Still serving after all of that.
      expect(ok(await call(client, "list_topics", {})).topics).toHaveLength(TOPICS.length);
    } finally {
      await client.close();
    }
  }, 60_000);

  it("refuses a wrong or missing token; the read token sees and calls only read-only tools", async () => {
    await expect(connect(urlOf(), "wrong-token-123")).rejects.toThrow(/401|nauthorized/);
    await expect(connect(urlOf())).rejects.toThrow(/401|nauthorized/);
    const raw = await fetch(`${urlOf()}/mcp`, { method: "POST", headers: { "content-type": "application/json", accept: "application/json, text/event-stream", authorization: "Bearer nope-nope-nope" }, body: "{}" });
    expect(raw.status).toBe(401);
    expect(raw.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(((await raw.json()) as any).error.code).toBe("unauthorized");

    const reader = await connect(urlOf(), READ_TOKEN);
    try {
      const names = (await reader.listTools()).tools.map((t) => t.name).sort();
      expect(names).toEqual(["get_run", "list_dead_letters", "list_runs", "list_topics", "read_feed", "read_stats", "wait_for_run"]);
      const refused = await call(reader, "publish_articles", { articles: [{ title: "x", body: "y" }] });
      expect(refused.isError).toBe(true);
      expect(refused.content[0].text).toMatch(/needs API_TOKEN/);
      expect(ok(await call(reader, "read_stats", {})).stages.length).toBe(pipeline.stages.size);
    } finally {
      await reader.close();
    }
  }, 60_000);

  it("GET and DELETE /mcp answer 405 (stateless: no session, no server stream); a body over MAX_BODY_BYTES 413", async () => {
    for (const method of ["GET", "DELETE"]) {
      const res = await fetch(`${urlOf()}/mcp`, { method, headers: { authorization: `Bearer ${TOKEN}`, accept: "text/event-stream" } });
      expect(res.status).toBe(405);
      expect(((await res.json()) as any).error.code).toBe("method_not_allowed");
    }
    const big = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list", params: { pad: "x".repeat(MAX_BODY + 10) } });
    const res = await fetch(`${urlOf()}/mcp`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", accept: "application/json, text/event-stream" }, body: big });
    expect(res.status).toBe(413);
    expect(((await res.json()) as any).error.code).toBe("payload_too_large");
  }, 60_000);
});
