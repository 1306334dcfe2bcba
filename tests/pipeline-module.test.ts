/**
 * Running any pipeline module with the CLI as users do (`npm start --
 * --pipeline ...`, PIPELINE=...): the example pipeline end to end with no news
 * routes mounted, an app's own routes and settings, clear errors for a bad
 * module, a busy PORT and a bad setting, data kept between starts and
 * `--reset` / `reset` deleting it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { examplePipeline } from "../functions/example/pipeline";
import { asEdgeApp, mountApp } from "../functions/edge-app";
import { choosePipeline } from "../worker-host/load-app";
import { resetDataDir } from "../worker-host/data-dir";
import { freePort } from "../worker-host/valkey-launcher";
import { maskSecret } from "../worker-host/http-mode";
import newsApp from "../functions/news/index";
import { eventually } from "./helpers/valkey";
import { nodeArgs } from "./helpers/node-entry";

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "edgepipe-cli-"));
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Cli {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function cli(args: string[], env: Record<string, string>): Cli {
  const child = spawn(process.execPath, nodeArgs("worker-host/cli.ts", args), {
    env: { ...process.env, VALKEY_URL: "", DEMO: "off", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
  return { child, output: () => out, exited };
}

/** Starts the CLI and resolves with its URL once it listens; stop() sends Ctrl-C and expects exit 0. */
async function startCli(args: string[], env: Record<string, string>) {
  const run = cli(["start", ...args], env);
  // A CLI that exits before it listens fails the test at once, with its exit code and signal.
  const exitedEarly = new Promise<never>((_, fail) => run.child.once("exit", (code, signal) => fail(new Error(`the CLI exited before listening (code ${code}, signal ${signal})`))));
  exitedEarly.catch(() => undefined);
  const listening = eventually(() => /listening on (\S+)/.exec(run.output())?.[1], { timeoutMs: 30_000 });
  listening.catch(() => undefined); // after an early exit it times out unobserved
  const url = await Promise.race([listening, exitedEarly]).catch((err) => {
    run.child.kill("SIGKILL");
    throw new Error(`${(err as Error).message}\n${run.output()}`);
  });
  return {
    url,
    output: run.output,
    async stop() {
      run.child.kill("SIGINT");
      expect(await run.exited, run.output()).toBe(0);
    },
  };
}

async function postRun(url: string, payloads: unknown[]): Promise<string> {
  const res = await fetch(`${url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads }) });
  expect(res.status).toBe(202);
  return ((await res.json()) as { runIds: string[] }).runIds[0];
}

async function completedRun(url: string, runId: string) {
  return eventually(async () => {
    const run = (await (await fetch(`${url}/v1/runs/${runId}`)).json()) as { status: string; steps: Array<{ stage: string; result?: unknown }> };
    return run.status === "completed" ? run : null;
  });
}

// The CLI runs are independent (each its own port and data dir) and mostly wait for child processes: side by side.
describe.concurrent("npm start -- --pipeline <module>", () => {
  it("runs the example pipeline end to end; news routes answer 404; data stays between starts until --reset", async () => {
    const dataDir = tempDir();
    const env = { PORT: String(await freePort()), VALKEY_DATA_DIR: dataDir };
    const first = await startCli(["--pipeline", "functions/example/pipeline.ts"], { ...env, API_TOKEN: "" });
    let runId: string;
    try {
      expect(first.output()).toContain('pipeline "example" (functions/example/pipeline.ts, from --pipeline)');
      // No API_TOKEN: the banner says writes are open (and they are: the POST below needs no token).
      await eventually(() => first.output().includes(`writes: OPEN - API_TOKEN is unset, so anyone who reaches ${first.url} can start runs`));
      // The URL lines follow the banner, possibly in a later chunk of the pipe.
      const webLine = new RegExp(`web: +runs ${first.url}/#/runs +dashboard ${first.url}/#/dashboard\\n`);
      await eventually(() => webLine.test(first.output()), { timeoutMs: 10_000 }).catch(() => expect(first.output()).toMatch(webLine));
      runId = await postRun(first.url, [{ text: "  hello   edge  world " }]);
      const run = await completedRun(first.url, runId);
      expect(run.steps.map((s) => [s.stage, s.result])).toEqual([
        ["normalize", { chars: 16 }],
        ["wordcount", { words: 3 }],
      ]);
      // Not mounted: the news API is not there (no 202 into a stream nobody reads).
      const articles = await fetch(`${first.url}/v1/articles`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ articles: [{ title: "t", body: "b" }] }) });
      expect(articles.status).toBe(404);
      expect(((await articles.json()) as { error: { code: string } }).error.code).toBe("not_found");
      expect((await fetch(`${first.url}/v1/topics`)).status).toBe(404);
      expect(await (await fetch(`${first.url}/v1/pipeline`)).json()).toMatchObject({ name: "example", entry: "normalize", apps: [] });
    } finally {
      await first.stop();
    }

    // DEMO=off on a second start keeps what the first one stored.
    const second = await startCli(["--pipeline", "functions/example/pipeline.ts"], { ...env, API_TOKEN: "second-start-token" });
    try {
      await eventually(() => second.output().includes("writes: need Authorization: Bearer <API_TOKEN>"));
      expect(second.output()).not.toContain("writes: OPEN");
      expect((await (await fetch(`${second.url}/v1/runs/${runId}`)).json()).status).toBe("completed");
    } finally {
      await second.stop();
    }

    const third = await startCli(["--pipeline", "functions/example/pipeline.ts", "--reset"], env);
    try {
      expect(third.output()).toMatch(/reset: deleted appendonlydir, .*server\.log/);
      expect((await fetch(`${third.url}/v1/runs/${runId}`)).status).toBe(404);
    } finally {
      await third.stop();
    }
  }, 180_000);

  it("PIPELINE names an app: its routes, its settings checked at start and handed to it, its start hook and links", async () => {
    const env = { PORT: String(await freePort()), VALKEY_DATA_DIR: tempDir(), PIPELINE: "tests/fixtures/greeting-app.ts", GREETING: "bonjour" };
    const app = await startCli([], env);
    try {
      expect(app.output()).toContain("from PIPELINE; app greeting");
      // The links line follows "listening on" in its own write: wait for it, not for the chunk.
      await eventually(() => app.output().includes(`greeting ${app.url}/v1/greeting`), { timeoutMs: 10_000 }).catch(() => expect(app.output()).toContain(`greeting ${app.url}/v1/greeting`));
      expect(await (await fetch(`${app.url}/v1/greeting`)).json()).toEqual({ greeting: "bonjour" });
      await eventually(() => app.output().includes("greeting app started (demo off)"));
      expect(((await (await fetch(`${app.url}/v1/pipeline`)).json()) as { apps: string[] }).apps).toEqual(["greeting"]);
    } finally {
      await app.stop();
    }
    const bad = cli(["start"], { ...env, GREETING: "x", BATCH_SIZE: "0" });
    expect(await bad.exited).toBe(1);
    expect(bad.output()).toMatch(/invalid configuration:[\s\S]*BATCH_SIZE[\s\S]*GREETING: GREETING must be at least 2 characters/);
  }, 120_000);

  it("a busy PORT is a clear error naming PORT, before anything starts", async () => {
    const blocker: Server = createServer();
    const port = await new Promise<number>((r) => blocker.listen(0, "127.0.0.1", () => r((blocker.address() as { port: number }).port)));
    try {
      const dataDir = tempDir();
      const run = cli(["start", "--pipeline", "functions/example/pipeline.ts"], { PORT: String(port), VALKEY_DATA_DIR: dataDir });
      expect(await run.exited).toBe(1);
      expect(run.output()).toContain(`PORT ${port} is already in use on 127.0.0.1`);
      expect(run.output()).not.toContain("listening on");
      expect(existsSync(join(dataDir, "launcher.json"))).toBe(false);
    } finally {
      blocker.close();
    }
  }, 120_000);

  it("a module that exports no pipeline, or is missing, stops the CLI with its name", async () => {
    const wrong = cli(["start", "--pipeline", "tests/fixtures/not-a-pipeline.ts"], { PORT: "0", VALKEY_DATA_DIR: tempDir() });
    const missing = cli(["start", "--pipeline", "./nowhere.ts"], { PORT: "0", VALKEY_DATA_DIR: tempDir() });
    expect(await wrong.exited).toBe(1);
    expect(wrong.output()).toContain("pipeline module tests/fixtures/not-a-pipeline.ts (--pipeline): the default export must be a pipeline (definePipeline) or an app (defineApp)");
    expect(await missing.exited).toBe(1);
    expect(missing.output()).toContain("pipeline module ./nowhere.ts not found");
  }, 120_000);
});

describe("reset", () => {
  it("deletes only what the launcher writes, refuses for VALKEY_URL or a live server", async () => {
    const dir = tempDir();
    mkdirSync(join(dir, "appendonlydir"));
    writeFileSync(join(dir, "appendonlydir", "appendonly.aof.1.incr.aof"), "x");
    writeFileSync(join(dir, "server.log"), "log");
    writeFileSync(join(dir, "notes.txt"), "mine");
    const run = cli(["reset"], { VALKEY_DATA_DIR: dir });
    expect(await run.exited, run.output()).toBe(0);
    expect(run.output()).toContain(`reset: deleted appendonlydir, server.log in ${dir}`);
    expect(run.output()).toContain("reset: kept notes.txt");
    expect(readdirSync(dir)).toEqual(["notes.txt"]);

    const elsewhere = cli(["reset"], { VALKEY_DATA_DIR: dir, VALKEY_URL: "redis://127.0.0.1:1" });
    expect(await elsewhere.exited).toBe(1);
    expect(elsewhere.output()).toContain("VALKEY_URL is set (redis://127.0.0.1:1)");
    expect(existsSync(join(dir, "notes.txt"))).toBe(true);

    writeFileSync(join(dir, "launcher.json"), JSON.stringify({ serverPid: process.pid }));
    expect(() => resetDataDir(dir)).toThrow(/a server \(pid \d+\) is running/);
    rmSync(join(dir, "launcher.json"));
    expect(resetDataDir(dir)).toMatchObject({ deleted: [], kept: ["notes.txt"] });
  });
});

describe("secrets in logs", () => {
  it("the generated REST bridge token is logged masked", () => {
    const token = "0123456789abcdef0123456789abcdef";
    expect(maskSecret(token)).toBe("0123... (32 chars)");
    expect(maskSecret(token)).not.toContain(token.slice(4));
  });
});

describe("pipeline modules", () => {
  it("chooses --pipeline, then PIPELINE, then package.json edgepipe.pipeline, else says how", () => {
    const root = tempDir();
    expect(() => choosePipeline({ env: {}, root })).toThrow(/no pipeline to run: pass --pipeline/);
    writeFileSync(join(root, "package.json"), JSON.stringify({ edgepipe: { pipeline: "./p.ts" } }));
    expect(choosePipeline({ env: {}, root })).toEqual({ specifier: "./p.ts", from: "package.json" });
    expect(choosePipeline({ env: { PIPELINE: "./q.ts" }, root })).toEqual({ specifier: "./q.ts", from: "PIPELINE" });
    expect(choosePipeline({ flag: "./r.ts", env: { PIPELINE: "./q.ts" }, root })).toEqual({ specifier: "./r.ts", from: "--pipeline" });
  });

  it("mounts an app's routes only for that app, and reports the mounted apps", async () => {
    const example = mountApp(asEdgeApp(examplePipeline));
    const news = mountApp(newsApp);
    expect(mountApp(newsApp)).toBe(news);
    const env = { UPSTASH_REDIS_REST_URL: "http://127.0.0.1:1", UPSTASH_REDIS_REST_TOKEN: "x" };
    const body = JSON.stringify({ articles: [{ title: "t", body: "b" }] });
    const init = { method: "POST", headers: { "content-type": "application/json" }, body };
    expect((await example.request("/v1/articles", init, env)).status).toBe(404);
    // The news app validates the same body (it would then need Valkey): it is mounted.
    expect((await news.request("/v1/articles", { ...init, body: "{}" }, env)).status).toBe(400);
    expect(() => asEdgeApp({ name: "x" }, "m.ts")).toThrow("m.ts: the default export must be a pipeline (definePipeline) or an app (defineApp); got object");
  });
});
