/**
 * Hosts never stall (issue 10): `npm start`'s runtime (the news app, in-process
 * handlers, production read timings) against a real server that is killed
 * with SIGKILL and started again on the same AOF after a 7 s outage.
 *
 * While the server is down: /health answers 503 within a second, ingest a
 * 503 `unavailable` within a bound, Ctrl-C (SIGINT) of a second host, an
 * `npm start` process under load, exits within 5 s, and no connection prints
 * "[ioredis] Unhandled error event".
 * After the restart: the host reads again on every stage (a new article runs
 * to completion) without any other fault to kick it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { randomHex } from "../functions/envelope";
import { app, NewsSettings, pipeline } from "../functions/news/index";
import { loadConfig } from "../worker-host/config";
import { startRuntime, type Runtime } from "../worker-host/runtime";
import { startRestartableValkey, type RestartableValkey } from "./helpers/restartable-valkey";
import { eventually } from "./helpers/valkey";
import { nodeArgs } from "./helpers/node-entry";

// RELIABILITY_OUTAGE_MS=10000 for a longer drill by hand.
const OUTAGE_MS = Number(process.env.RELIABILITY_OUTAGE_MS ?? 7000);

let v: RestartableValkey;
const runtimes: Runtime[] = [];
const children: ChildProcess[] = [];
const consoleErrors: string[] = [];

beforeAll(async () => {
  v = await startRestartableValkey({ appendfsync: "always" });
  const original = console.error;
  vi.spyOn(console, "error").mockImplementation((...args: unknown[]) => {
    consoleErrors.push(args.map(String).join(" "));
    original(...args);
  });
});
afterAll(async () => {
  vi.restoreAllMocks();
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  await Promise.allSettled(runtimes.map((r) => r.close()));
  await v?.stop();
});

/** npm start's configuration with its production read timings (BLOCK_MS 1000, watchdog grace 5 s). */
async function startHost(lines: string[]): Promise<Runtime> {
  const config = loadConfig({ VALKEY_URL: v.url, PORT: "0", HOST: "127.0.0.1", DEMO: "off", WEB_DIR: "", KEY_PREFIX: `o${randomHex(3)}`, RETRY_BACKOFF_MS: "50" }, { appSettings: NewsSettings });
  const rt = await startRuntime({ config, pipeline, app, log: (l) => lines.push(l) });
  runtimes.push(rt);
  return rt;
}

/** `npm start` as a process (the CLI), against the test server; resolves with its URL once it listens. */
async function startHostProcess(output: string[]): Promise<{ child: ChildProcess; url: string; exited: Promise<number | null> }> {
  const env = { ...process.env, VALKEY_URL: v.url, PORT: "0", HOST: "127.0.0.1", DEMO: "off", WEB_DIR: "", KEY_PREFIX: `c${randomHex(3)}`, RETRY_BACKOFF_MS: "50" };
  const child = spawn(process.execPath, nodeArgs("worker-host/cli.ts", ["start"]), { env, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer) => {
      output.push(d.toString());
      const m = /listening on (http:\/\/\S+)/.exec(output.join(""));
      if (m) resolve(m[1]);
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (d: Buffer) => output.push(d.toString()));
    void exited.then((code) => reject(new Error(`host process exited (${code}) before listening:\n${output.join("")}`)));
  });
  return { child, url, exited };
}

let seq = 0;
function article() {
  seq++;
  return { title: `Outage drill ${seq}: markets steady as storm passes`, body: `Report ${seq} ${randomHex(4)}: shares closed higher on Tuesday after a volatile session, traders said.` };
}

async function post(rt: { url: string }, path: string, body: unknown, timeoutMs = 10_000): Promise<{ status: number; json: any; ms: number }> {
  const started = performance.now();
  const res = await fetch(`${rt.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
  return { status: res.status, json: await res.json(), ms: performance.now() - started };
}

async function health(rt: Runtime): Promise<{ status: number; json: any; ms: number }> {
  const started = performance.now();
  const res = await fetch(`${rt.url}/health`, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, json: await res.json(), ms: performance.now() - started };
}

async function runStatus(rt: Runtime, runId: string): Promise<string | undefined> {
  const res = await fetch(`${rt.url}/v1/runs/${runId}`);
  return res.status === 200 ? ((await res.json()) as { status: string }).status : undefined;
}

describe("a 7 s server outage (kill -9, restart on the same AOF)", () => {
  it("answers 503 while down, exits on Ctrl-C within 5 s while down, and reads again after the restart", async () => {
    const lines: string[] = [];
    const closerOutput: string[] = [];
    const [rt, closer] = await Promise.all([startHost(lines), startHostProcess(closerOutput)]);

    // Work flows before the fault.
    const before = await post(rt, "/v1/articles", { articles: [article(), article()] });
    expect(before.status).toBe(202);
    await eventually(async () => (await Promise.all(before.json.runIds.map((id: string) => runStatus(rt, id)))).every((s) => s === "completed"), { timeoutMs: 15_000, stepMs: 50 });
    // The second host is under load when the server dies (a trickle of ingest keeps going).
    let trickle = true;
    const trickling = (async () => {
      while (trickle) {
        await post(closer, "/v1/articles", { articles: [article()] }).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await new Promise((r) => setTimeout(r, 300));

    await v.kill9();
    const downAt = Date.now();

    const down = await health(rt);
    expect(down.status).toBe(503);
    expect(down.ms).toBeLessThan(1000);
    expect(down.json.valkey.reachable).toBe(false);

    const ingest = await post(rt, "/v1/articles", { articles: [article()] });
    expect(ingest.status).toBe(503);
    expect(ingest.json.error.code).toBe("unavailable");
    expect(ingest.ms).toBeLessThan(3000);
    const metrics = await fetch(`${rt.url}/metrics`, { signal: AbortSignal.timeout(10_000) });
    expect(metrics.status).toBe(503);
    const stats = await fetch(`${rt.url}/v1/stats`, { signal: AbortSignal.timeout(10_000) });
    expect(stats.status).toBe(503);
    expect(((await stats.json()) as { error: { code: string } }).error.code).toBe("unavailable");
    const runs = await post(rt, "/v1/runs", { payloads: [{ url: "https://example.com/a", title: "t", body: "b" }] });
    expect(runs.status).toBe(503);
    expect(runs.json.error.code).toBe("unavailable");
    expect(JSON.stringify(runs.json)).not.toMatch(/ECONNREFUSED|max retries|127\.0\.0\.1/);

    // Ctrl-C of the loaded host process while the server is down: it exits, cleanly, within 5 s.
    await new Promise((r) => setTimeout(r, 1500));
    const closeStarted = performance.now();
    closer.child.kill("SIGINT");
    const code = await closer.exited;
    const closeMs = performance.now() - closeStarted;
    trickle = false;
    await trickling;
    expect(code).toBe(0);
    expect(closeMs).toBeLessThan(5000);
    expect(closerOutput.join("")).toContain("stopped cleanly");
    expect(closerOutput.join("")).not.toContain("Unhandled error event");

    // Still down a while: past BLOCK_MS + the watchdog's grace, so the watchdog fires during the outage.
    await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_MS - (Date.now() - downAt))));
    const stillDown = await health(rt);
    expect(stillDown.status).toBe(503);
    expect(stillDown.ms).toBeLessThan(1000);

    await v.restart();
    const upAt = performance.now();
    // Ingest is accepted again once the command connection is back...
    const accepted = await eventually(async () => {
      const r = await post(rt, "/v1/articles", { articles: [article()] });
      return r.status === 202 ? r : null;
    }, { timeoutMs: 10_000, stepMs: 50 });
    const acceptedMs = performance.now() - upAt;
    // ...and every stage reads again: the article runs to completion.
    const [runId] = accepted.json.runIds as string[];
    await eventually(async () => (await runStatus(rt, runId)) === "completed", { timeoutMs: 15_000, stepMs: 50 });
    const completedMs = performance.now() - upAt;
    expect((await health(rt)).status).toBe(200);

    console.log(
      `outage figures: /health while down ${down.ms.toFixed(0)} ms and ${stillDown.ms.toFixed(0)} ms; ingest 503 in ${ingest.ms.toFixed(0)} ms; ` +
        `Ctrl-C exit while down ${closeMs.toFixed(0)} ms; after restart: ingest accepted in ${acceptedMs.toFixed(0)} ms, run completed (4 stages) in ${completedMs.toFixed(0)} ms`,
    );
    expect(consoleErrors.filter((l) => l.includes("Unhandled error event"))).toEqual([]);
    // Reconnect trouble is logged once per episode and connection, not per attempt.
    const lost = lines.filter((l) => /connection lost/.test(l));
    expect(lost.length).toBeGreaterThan(0);
    expect(lost.length).toBeLessThanOrEqual(2 + pipeline.stages.size);
  });
});
