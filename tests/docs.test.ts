/**
 * The docs cannot drift from the code: every code block of README.md and
 * docs/*.md is checked. TypeScript blocks are written out here (shell blocks
 * start them) and type-checked against the package's sources by
 * tests/docs-types.slow.test.ts (`npm run test:slow`); shell blocks whose curl calls the local
 * app are run against a runtime started with the CLI the way the block says
 * (`npm start -- --pipeline ./hello.ts` starts the README's hello.ts), each
 * answer checked; npm scripts, bins, CLI flags, repo paths, variables, JSON,
 * links and anchors are checked statically; docs/configuration.md must list
 * exactly the variables of the zod schemas, and docs/api.md exactly the app's
 * routes. A block opts out only with `<!-- docs-test: skip: <reason> -->`.
 * The last group feeds the same checks a broken document and expects each
 * problem to be found, so the checks can fail.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomHex } from "../functions/envelope";
import { mountApp } from "../functions/edge-app";
import newsApp from "../functions/news/index";
import {
  REPO,
  blockPath,
  checkApiDoc,
  checkConfigDoc,
  checkDocStatic,
  extractBlocks,
  gatherFacts,
  isLocalApp,
  matchesRoute,
  parseCurl,
  readDocs,
  shellCommands,
  shellLines,
  CHECKED_LANGS,
  writeTsBlocks,
  type Block,
  type Problem,
  type Routes,
} from "./helpers/docs-check";
import { BROKEN, EXTERNAL_NAMES, SCHEMAS, SELFTEST_DOC, CONFIG_SECTIONS } from "./helpers/docs-fixtures";
import { startTestValkey, type TestValkey } from "./helpers/valkey";
import { nodeArgs } from "./helpers/node-entry";

const OUT = join(REPO, "tests", "artifacts", "docs-blocks");

const docs = readDocs();
const extracted = new Map(docs.map((d) => [d.path, extractBlocks(d)]));
const broken = extractBlocks(BROKEN);
const blocks = [...extracted.values()].flatMap((e) => e.blocks);
const facts = gatherFacts(REPO, SCHEMAS, [...blocks, ...broken.blocks], EXTERNAL_NAMES);
/** Routes of the news app (framework API included) and the Node server's own. */
const newsRoutes: Routes = new Set([...mountApp(newsApp).routes.filter((r) => r.method !== "ALL").map((r) => `${r.method} ${r.path}`), "GET /metrics"]);

const fmt = (ps: Problem[]) => ps.map((p) => `${p.doc}:${p.line}: ${p.message}`);

// ---------------------------------------------------------------- live runs of shell blocks

interface Stack {
  key: string;
  pipeline?: string;
  env: Record<string, string>;
  child?: ChildProcess;
  url?: Promise<string>;
  output: string;
  lastRunId?: string;
}

/** The stack a shell block talks to: what its `npm start` / `npx edgepipe start` line starts (default: package.json's app). */
function stackOf(block: Block): { pipeline?: string; env: Record<string, string> } {
  for (const l of shellLines(block.code)) {
    for (const words of shellCommands(l.text).commands) {
      const env: Record<string, string> = {};
      let w = words;
      while (w.length > 0 && /^[A-Za-z_][A-Za-z0-9_]*=/.test(w[0])) {
        const at = w[0].indexOf("=");
        env[w[0].slice(0, at)] = w[0].slice(at + 1);
        w = w.slice(1);
      }
      const isStart = (w[0] === "npm" && w[1] === "start") || (w[0] === "npx" && w[1] === "edgepipe" && w[2] === "start");
      if (!isStart) continue;
      const flag = w.indexOf("--pipeline");
      let spec = flag >= 0 ? w[flag + 1] : env.PIPELINE;
      delete env.PIPELINE;
      if (spec) {
        const name = spec.replace(/^\.\//, "");
        // A block file of the same document (hello.ts), written where the type check wrote it.
        if (facts.blockFiles.get(block.doc)?.has(name)) spec = blockPath(OUT, { ...block, file: name });
        else spec = join(REPO, spec);
      }
      return { pipeline: spec, env };
    }
  }
  return { env: {} };
}

const hasLocalCurl = (b: Block) => shellLines(b.code).some((l) => shellCommands(l.text).commands.some((c) => c[0] === "curl" && isLocalApp(parseCurlSafe(c)?.url ?? "")));
function parseCurlSafe(words: string[]) {
  try {
    return parseCurl(words);
  } catch {
    return undefined;
  }
}

const liveBlocks = [...blocks.filter((b) => !b.skip && CHECKED_LANGS[b.lang] === "sh" && hasLocalCurl(b)), ...broken.blocks.filter((b) => CHECKED_LANGS[b.lang] === "sh" && hasLocalCurl(b))];
const stacks = new Map<string, Stack>();
for (const b of liveBlocks) {
  const { pipeline, env } = stackOf(b);
  const key = `${pipeline ?? "(package.json)"} ${JSON.stringify(env)}`;
  if (!stacks.has(key)) stacks.set(key, { key, pipeline, env, output: "" });
}
const stackKeyOf = (b: Block) => {
  const { pipeline, env } = stackOf(b);
  return `${pipeline ?? "(package.json)"} ${JSON.stringify(env)}`;
};

let valkey: TestValkey;

function startStack(stack: Stack): void {
  const args = nodeArgs("worker-host/cli.ts", ["start", ...(stack.pipeline ? ["--pipeline", stack.pipeline] : [])]);
  // The block's own variables, then what keeps the run isolated: a test server, a free port, no demo, no web build.
  const env = { ...process.env, ...stack.env, VALKEY_URL: valkey.url, PORT: "0", HOST: "127.0.0.1", KEY_PREFIX: `docs${randomHex(3)}`, DEMO: "off", WEB_DIR: "", API_TOKEN: "" };
  const child = spawn(process.execPath, args, { cwd: REPO, env, stdio: ["ignore", "pipe", "pipe"] });
  stack.child = child;
  child.stdout!.on("data", (d) => (stack.output += d));
  child.stderr!.on("data", (d) => (stack.output += d));
  // No timer here: this process type-checks synchronously meanwhile; runBlock bounds the wait.
  stack.url = new Promise<string>((resolve, reject) => {
    child.stdout!.on("data", () => {
      const m = /listening on (\S+)/.exec(stack.output);
      if (m) resolve(m[1]);
    });
    child.on("close", (code) => reject(new Error(`${stack.key} exited with ${code} before listening:\n${stack.output}`)));
  });
  stack.url.catch(() => undefined);
}

async function stopStack(stack: Stack): Promise<void> {
  const child = stack.child;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGINT");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}

/** Runs every local curl of a block against its stack; a problem per unexpected answer. */
async function runBlock(block: Block): Promise<Problem[]> {
  const stack = stacks.get(stackKeyOf(block))!;
  const problems: Problem[] = [];
  let base: string;
  try {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no "listening on" within 60 s:\n${stack.output}`)), 60_000)));
    base = await Promise.race([stack.url!, timeout]).finally(() => clearTimeout(timer));
  } catch (err) {
    return [{ doc: block.doc, line: block.line, message: `could not start what the block runs: ${(err as Error).message}` }];
  }
  for (const l of shellLines(block.code)) {
    const line = block.line + 1 + l.offset;
    const { commands, comment } = shellCommands(l.text);
    for (const words of commands.filter((c) => c[0] === "curl")) {
      const req = parseCurlSafe(words);
      if (!req || !isLocalApp(req.url)) continue;
      let url = req.url.replace(/^http:\/\/(localhost|127\.0\.0\.1):8787/, base);
      if (url.includes("<runId>")) {
        if (!stack.lastRunId) {
          problems.push({ doc: block.doc, line, message: "uses <runId> before any call answered runIds" });
          continue;
        }
        url = url.replaceAll("<runId>", stack.lastRunId);
      }
      if (/<[^>]+>/.test(url)) {
        problems.push({ doc: block.doc, line, message: `placeholder in ${req.url} the test cannot fill (only <runId>)` });
        continue;
      }
      const expected = /^(\d{3})\b/.exec(comment)?.[1];
      const pathOnly = new URL(url).pathname;
      const pollRun = req.method === "GET" && /^\/v1\/runs\/[^/]+$/.test(pathOnly);
      const deadline = Date.now() + 30_000;
      for (;;) {
        let status: number;
        let body: unknown;
        try {
          const res = await fetch(url, { method: req.method, headers: req.headers, body: req.body, signal: AbortSignal.timeout(10_000) });
          status = res.status;
          if ((res.headers.get("content-type") ?? "").includes("text/event-stream")) {
            await res.body?.cancel();
            body = undefined;
          } else {
            const text = await res.text();
            try {
              body = JSON.parse(text);
            } catch {
              body = text;
            }
          }
        } catch (err) {
          problems.push({ doc: block.doc, line, message: `${req.method} ${req.url}: ${(err as Error).message}` });
          break;
        }
        const runIds = (body as { runIds?: unknown })?.runIds;
        if (Array.isArray(runIds) && typeof runIds[0] === "string") stack.lastRunId = runIds[0];
        if (pollRun && status === 200 && (body as { status?: string }).status === "running" && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        const ok = expected ? String(status) === expected : status >= 200 && status < 300;
        if (!ok) problems.push({ doc: block.doc, line, message: `${req.method} ${req.url} answered ${status}${expected ? `, the block says ${expected}` : ""}: ${JSON.stringify(body).slice(0, 300)}` });
        else if (pollRun && (body as { status?: string }).status === "running") problems.push({ doc: block.doc, line, message: `run ${stack.lastRunId} still running after 30 s` });
        break;
      }
    }
  }
  return problems;
}

// ---------------------------------------------------------------- the checks

let liveProblems = new Map<string, Problem[]>();

beforeAll(async () => {
  const written = writeTsBlocks([...blocks, ...broken.blocks], OUT, facts);
  valkey = await startTestValkey();
  // The runtimes start (child processes) while this process type-checks.
  for (const s of stacks.values()) startStack(s);
  const started = performance.now();
  for (const b of liveBlocks) liveProblems.set(`${b.doc}:${b.line}`, await runBlock(b));
  console.log(`docs: ${written.length} TypeScript blocks written (type-checked by tests/docs-types.slow.test.ts); ${liveBlocks.length} shell blocks run against ${stacks.size} runtimes in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}, 180_000);

afterAll(async () => {
  await Promise.all([...stacks.values()].map(stopStack));
  await valkey?.stop();
});


describe("docs: README.md and docs/*.md match the code", () => {
  it("every code block is well formed, has a checked language, and skips only with a reason", () => {
    expect(fmt([...extracted.values()].flatMap((e) => e.problems))).toEqual([]);
  });

  it("shell blocks with curl run against a runtime started as the block says, each answer as documented", () => {
    const real = liveBlocks.filter((b) => b.doc !== SELFTEST_DOC);
    expect(real.length).toBeGreaterThanOrEqual(3);
    expect(fmt(real.flatMap((b) => liveProblems.get(`${b.doc}:${b.line}`) ?? []))).toEqual([]);
  });

  it("curl calls to other hosts name routes the app has", () => {
    const problems: Problem[] = [];
    for (const b of blocks.filter((b) => !b.skip && CHECKED_LANGS[b.lang] === "sh")) {
      for (const l of shellLines(b.code)) {
        for (const words of shellCommands(l.text).commands.filter((c) => c[0] === "curl")) {
          const req = parseCurlSafe(words);
          if (!req || isLocalApp(req.url)) continue;
          if (!matchesRoute(newsRoutes, req.method, new URL(req.url).pathname)) problems.push({ doc: b.doc, line: b.line + 1 + l.offset, message: `${req.method} ${new URL(req.url).pathname}: no such route` });
        }
      }
    }
    expect(fmt(problems)).toEqual([]);
  });

  it("scripts, bins, CLI flags, paths, variables, JSON, links and anchors exist", () => {
    const problems = docs.flatMap((d) => checkDocStatic(facts, d, extracted.get(d.path)!.blocks));
    expect(fmt(problems)).toEqual([]);
  });

  it("docs/configuration.md lists exactly the schemas' variables with their defaults, and every variable the code reads", () => {
    const doc = docs.find((d) => d.path === "docs/configuration.md")!;
    expect(fmt(checkConfigDoc(facts, doc, CONFIG_SECTIONS))).toEqual([]);
  });

  it("docs/api.md lists exactly the app's routes", () => {
    const doc = docs.find((d) => d.path === "docs/api.md")!;
    expect(fmt(checkApiDoc(doc, newsRoutes))).toEqual([]);
  });

  it("docs/index.md lists every page, the README links it and stays short", () => {
    const index = docs.find((d) => d.path === "docs/index.md")!;
    const missing = docs.filter((d) => d.path.startsWith("docs/") && d.path !== "docs/index.md" && !index.text.includes(`](${d.path.slice("docs/".length)}`)).map((d) => d.path);
    expect(missing).toEqual([]);
    const readme = docs.find((d) => d.path === "README.md")!;
    expect(readme.text).toContain("](docs/index.md)");
    expect(readme.text.split("\n").length).toBeLessThanOrEqual(200);
  });
});

describe("docs checks fail on a document that drifted", () => {
  it("a removed export, a route, a variable, a script, a flag, a file, a link, an anchor, a status and an unnamed block are each reported", () => {
    const problems = [...broken.problems, ...checkDocStatic(facts, BROKEN, broken.blocks), ...broken.blocks.flatMap((b) => liveProblems.get(`${b.doc}:${b.line}`) ?? [])];
    const messages = fmt(problems).join("\n");
    for (const expected of [
      /nowhere\.md does not exist/,
      /has no heading #no-such-heading/,
      /NO_SUCH_SETTING: not a variable/,
      /npm script "no-such-script" does not exist/,
      /sets NOT_A_VARIABLE, which no schema/,
      /BATCH_SIZE=0 is rejected by its schema/,
      /--no-such-flag is not a flag/,
      /no-such-tool\.ts: no such file/,
      /GET http:\/\/localhost:8787\/v1\/no-such-route answered 404/,
      /answered 202, the block says 200/,
      /code block without a language/,
    ]) {
      expect(messages).toMatch(expected);
    }
  });

  it("a configuration table missing a variable, with a wrong default or an unknown variable is reported", () => {
    const doc = docs.find((d) => d.path === "docs/configuration.md")!;
    const text = doc.text
      .replace(/^\| `PORT` \|.*\n/m, "")
      .replace("| `BATCH_SIZE` | `100` |", "| `BATCH_SIZE` | `200` |")
      .replace("| `HOST` |", "| `NOT_IN_ANY_SCHEMA` | (unset) | made up |\n| `HOST` |");
    const messages = fmt(checkConfigDoc(facts, { ...doc, text }, CONFIG_SECTIONS)).join("\n");
    expect(messages).toMatch(/HostConfig has PORT, which the "Host" table does not list/);
    expect(messages).toMatch(/BATCH_SIZE: default cell "`200`" but HostConfig says `100`/);
    expect(messages).toMatch(/NOT_IN_ANY_SCHEMA is listed under "Host" but HostConfig has no such variable/);
  });

  it("an API table missing a route or listing a removed one is reported", () => {
    const doc = docs.find((d) => d.path === "docs/api.md")!;
    const text = doc.text.replace(/^\| `GET \/v1\/pipeline` \|.*\n/m, "| `GET /v1/removed` | | gone |\n");
    const messages = fmt(checkApiDoc({ ...doc, text }, newsRoutes)).join("\n");
    expect(messages).toMatch(/the app has GET \/v1\/pipeline, which no table lists/);
    expect(messages).toMatch(/GET \/v1\/removed is documented but the app has no such route/);
  });
});
