/**
 * The Node runtime as users run it: `npm start` (the CLI) end to end with the
 * embedded server and a clean Ctrl-C; health, stats, metrics, validation;
 * and safe stream trimming.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, isAlive as alive } from "../worker-host/valkey-launcher";
import { runScript } from "../worker-host/valkey";
import { loadConfig } from "../worker-host/config";
import { NewsSettings, newsSettings } from "../functions/news/config";
import { createApp } from "../functions/app";
import { examplePipeline } from "../functions/example/pipeline";
import { eventually, startTestValkey, testKeys, type TestValkey } from "./helpers/valkey";
import { nodeArgs } from "./helpers/node-entry";

let v: TestValkey;
beforeAll(async () => {
  v = await startTestValkey();
});
afterAll(async () => {
  await v?.stop();
});


describe("npm start", () => {
  it("starts the embedded server, processes the demo run end to end, and stops cleanly on SIGINT", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "edgepipe-start-"));
    const port = await freePort();
    const child = spawn(process.execPath, nodeArgs("worker-host/cli.ts", ["start"]), {
      // WEB_DIR= (empty): no web client; TOPIC_LIST_CAP reaches the handlers (checked below).
      env: { ...process.env, PORT: String(port), VALKEY_DATA_DIR: dataDir, DEMO: "on", VALKEY_URL: "", WEB_DIR: "", TOPIC_LIST_CAP: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (out += d));
    try {
      const runUrl = await eventually(() => /demo run started: (\S+)/.exec(out)?.[1], { timeoutMs: 30_000 });
      expect(out).toContain(`listening on http://127.0.0.1:${port}`);
      const serverPid = (JSON.parse(readFileSync(join(dataDir, "launcher.json"), "utf8")) as { serverPid: number }).serverPid;
      const run = await eventually(async () => {
        const r = (await (await fetch(runUrl)).json()) as { status: string; steps: Array<{ stage: string }> };
        return r.status === "completed" ? r : null;
      });
      expect(run.steps.map((s) => s.stage)).toEqual(["ingest", "fetcher", "classifier", "enricher", "fanout"]);
      const health = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as { ok: boolean; valkey: { server: string; version: string } };
      expect(health.ok).toBe(true);
      expect(health.valkey.version).toMatch(/^\d+\.\d+/);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/edgepipe_stage_processed_total\{stage="fanout"\} [1-9]/);
      const feed = (await (await fetch(`http://127.0.0.1:${port}/v1/topics`)).json()) as { topics: Array<{ subscribers: number }> };
      expect(feed.topics.reduce((s, t) => s + t.subscribers, 0)).toBeGreaterThan(0);
      expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(404);

      child.kill("SIGINT");
      const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
      expect(code).toBe(0);
      expect(out).toContain("stopped cleanly");
      expect(alive(serverPid)).toBe(false);
      expect(existsSync(join(dataDir, "launcher.json"))).toBe(false);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("hands an app's settings to its handlers as given and checks them at start with the app's schema; WEB_DIR= serves no web client", () => {
    const env = { ENRICH_CACHE: "on", TOPIC_LIST_CAP: "5", FANOUT_MARKER_TTL_SECONDS: "3600", SSE_POLL_MS: "100", WEB_DIR: "", PORT: "9000" };
    const config = loadConfig(env, { appSettings: NewsSettings });
    expect(config.appVars).toEqual({ ENRICH_CACHE: "on", TOPIC_LIST_CAP: "5", FANOUT_MARKER_TTL_SECONDS: "3600", SSE_POLL_MS: "100" });
    const news = newsSettings({ ...config.appVars });
    expect([news.ENRICH_CACHE, news.TOPIC_LIST_CAP, news.FANOUT_MARKER_TTL_SECONDS]).toEqual(["on", 5, 3600]);
    expect(config.webDisabled).toBe(true);
    expect(loadConfig({}).webDisabled).toBe(false);
    const bad = { ENRICH_CACHE: "maybe", TOPIC_LIST_CAP: "0", BATCH_SIZE: "0" };
    expect(() => loadConfig(bad, { appSettings: NewsSettings })).toThrow(/BATCH_SIZE[\s\S]*TOPIC_LIST_CAP[\s\S]*ENRICH_CACHE/);
    // Without an app the host knows none of the news variables: they are neither checked nor handed on.
    expect(() => loadConfig({ ENRICH_CACHE: "maybe" })).not.toThrow();
    expect(loadConfig(env).appVars).toEqual({});
  });

  it("refuses a bad configuration with a list of what is wrong", async () => {
    const child = spawn(process.execPath, nodeArgs("worker-host/cli.ts", ["start"]), {
      env: { ...process.env, PORT: "not-a-port", BATCH_SIZE: "0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    child.stderr!.on("data", (d) => (err += d));
    const code = await new Promise<number | null>((r) => child.on("exit", (c) => r(c)));
    expect(code).toBe(1);
    expect(err).toMatch(/invalid configuration:[\s\S]*PORT[\s\S]*BATCH_SIZE/);
  });
});

describe("HTTP app", () => {
  const app = createApp({ pipeline: examplePipeline });

  it("reports health with the server's name and version, 503 when unreachable", async () => {
    const keys = testKeys();
    const ok = await app.request("/health", {}, { REDIS: v.redis, KEY_PREFIX: keys.prefix });
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as { ok: boolean; valkey: { reachable: boolean; server: string } };
    expect(body.valkey).toMatchObject({ reachable: true });
    expect(["valkey", "redis"]).toContain(body.valkey.server);
    const down = await app.request("/health", {}, { UPSTASH_REDIS_REST_URL: "http://127.0.0.1:1", UPSTASH_REDIS_REST_TOKEN: "x" });
    expect(down.status).toBe(503);
    expect(((await down.json()) as { valkey: { reachable: boolean } }).valkey.reachable).toBe(false);
  });

  it("validates input with 4xx and the issue list", async () => {
    const env = { REDIS: v.redis, KEY_PREFIX: testKeys().prefix };
    const badRun = await app.request("/v1/runs/not%20valid!", {}, env);
    expect(badRun.status).toBe(400);
    const body = (await badRun.json()) as { error: { code: string; issues: Array<{ path: string }> } };
    expect(body.error.code).toBe("validation_failed");
    expect(body.error.issues[0].path).toBe("runId");
    expect((await app.request("/v1/runs/r-unknown", {}, env)).status).toBe(404);
    const tooMany = await app.request("/v1/runs", { method: "POST", body: JSON.stringify({ payloads: Array.from({ length: 501 }, () => ({})) }), headers: { "content-type": "application/json" } }, env);
    expect(tooMany.status).toBe(413);
    const badJson = await app.request("/v1/dead-letters/redrive", { method: "POST", body: "{", headers: { "content-type": "application/json" } }, env);
    expect(badJson.status).toBe(400);
    const unsigned = await app.request("/stages/normalize", { method: "POST", body: "{}" }, env);
    expect(unsigned.status).toBe(401);
  });

  it("requires the API token on write endpoints when API_TOKEN is set", async () => {
    const env = { REDIS: v.redis, KEY_PREFIX: testKeys().prefix, API_TOKEN: "s3cret-token" };
    const init = (auth?: string) => ({ method: "POST", body: JSON.stringify({ payloads: [{ text: "hi" }] }), headers: { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) } });
    expect((await app.request("/v1/runs", init(), env)).status).toBe(401);
    expect((await app.request("/v1/runs", init("Bearer wrong-token"), env)).status).toBe(401);
    expect((await app.request("/v1/runs", init("Bearer s3cret-token"), env)).status).toBe(202);
  });
});

describe("stream trimming", () => {
  it("never trims below what a group has not acknowledged", async () => {
    const keys = testKeys();
    const stream = keys.stream("normalize", 0);
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) ids.push(String(await v.conn.xadd(stream, "*", "e", String(i))));
    await v.conn.xgroup("CREATE", stream, "g1", "0");
    await v.conn.xgroup("CREATE", stream, "g2", "0");
    // g1 read 30 and acked the first 20; g2 read and acked 40.
    await v.conn.xreadgroup("GROUP", "g1", "c", "COUNT", 30, "STREAMS", stream, ">");
    await v.conn.xack(stream, "g1", ...ids.slice(0, 20));
    await v.conn.xreadgroup("GROUP", "g2", "c", "COUNT", 40, "STREAMS", stream, ">");
    await v.conn.xack(stream, "g2", ...ids.slice(0, 40));
    expect(await runScript(v.conn, "trimStream", [stream], [100])).toBe(0); // under the cap: untouched
    expect(await runScript(v.conn, "trimStream", [stream], [10])).toBe(20);
    const left = await v.conn.xrange(stream, "-", "+");
    expect(left[0][0]).toBe(ids[20]); // g1's oldest pending entry survives
    await v.conn.xack(stream, "g1", ...ids.slice(20, 30));
    // g1 has nothing pending now; entries after its last delivered id (30..49) were never delivered to it.
    expect(await runScript(v.conn, "trimStream", [stream], [10])).toBe(10);
    expect(await v.conn.xlen(stream)).toBe(20);
  });
});
