/**
 * The package as a user gets it: `npm pack` (prepack builds dist/lib), the
 * tarball installed into a fresh project outside this repository, offline
 * (the lock names every dependency by integrity, so npm takes them from the
 * cache `npm ci` filled), a 20-line two-stage TypeScript pipeline there
 * type-checked against the published .d.ts, run end to end with
 * `npx edgepipe start` on the embedded server, and its Worker bundle built
 * offline with `npx edgepipe build` (wrangler deploy --dry-run) and loaded
 * in workerd. The package's own dependencies are installed from the
 * tarball's metadata; only wrangler, an optional peer, is linked.
 */
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inspectBundle } from "../worker-host/worker-bundle";
import { DEFAULT_COMPATIBILITY_DATE } from "../worker-host/worker-project";
import { freePort } from "../worker-host/valkey-launcher";
import { eventually } from "./helpers/valkey";

const run = promisify(execFile);
const repo = resolve(__dirname, "..");
const work = mkdtempSync(join(tmpdir(), "edgepipe-pack-"));
const project = join(work, "my-pipeline");

type LockEntry = { version?: string; dependencies?: Record<string, string>; optionalDependencies?: Record<string, string>; peerDependencies?: Record<string, string>; [k: string]: unknown };

/**
 * The entries of the repository's lock that `names` need (nested
 * node_modules resolved the way Node does), without the dev/peer flags of
 * this repository: the new project's lock, so `npm ci --offline` needs no
 * registry metadata.
 */
function lockClosure(packages: Record<string, LockEntry>, names: string[]): Record<string, LockEntry> {
  const out: Record<string, LockEntry> = {};
  const visit = (from: string, name: string, optional: boolean) => {
    for (let dir = from; ; dir = dir.includes("/node_modules/") ? dir.slice(0, dir.lastIndexOf("/node_modules/")) : "") {
      const key = `${dir ? `${dir}/` : ""}node_modules/${name}`;
      if (packages[key]) {
        if (out[key]) return;
        const { dev: _d, devOptional: _o, peer: _p, ...entry } = packages[key];
        out[key] = entry;
        const e = packages[key];
        for (const d of Object.keys(e.dependencies ?? {})) visit(key, d, false);
        for (const d of Object.keys(e.optionalDependencies ?? {})) visit(key, d, true);
        for (const d of Object.keys(e.peerDependencies ?? {})) visit(key, d, true);
        return;
      }
      if (!dir) break;
    }
    if (!optional) throw new Error(`lock has no ${name} reachable from ${from || "the root"}`);
  };
  for (const n of names) visit("", n, false);
  return out;
}

const PIPELINE_TS = `import { z } from "zod";
import { defineStage, definePipeline } from "edgepipe";

const split = defineStage({
  name: "split",
  input: z.object({ text: z.string().min(1) }),
  next: ["count"],
  handle: ({ text }) => ({ emit: [{ payload: { words: text.trim().split(/\\s+/) } }], result: { split: true } }),
});

const count = defineStage({
  name: "count",
  input: z.object({ words: z.array(z.string()) }),
  next: [],
  handle: ({ words }) => ({ result: { words: words.length, longest: words.reduce((a, b) => (b.length > a.length ? b : a), "") } }),
});

export default definePipeline({ name: "wordcounter", stages: [split, count] });
`;

// Fails to compile if the published types were missing (any) or wrong.
const TYPES_TS = `import pipeline from "./pipeline.js";
import { createKeys, defineStage, StageError, type Pipeline } from "edgepipe";
import type { startRuntime } from "edgepipe/host";
import type { AppType } from "edgepipe/news";
import { z } from "zod";

const p: Pipeline = pipeline;
const stream: string = createKeys({ prefix: "x" }).stream(p.entry, 0);
// @ts-expect-error a stage needs a handler
defineStage({ name: "bad", input: z.object({}), next: [] });
new StageError("no", { retryable: false });
export type Host = typeof startRuntime;
export type News = AppType;
export { stream };
`;

let tarball: string;
let packSeconds = 0;
let installSeconds = 0;

beforeAll(async () => {
  let t = performance.now();
  // prepack runs build:lib (tsc -> dist/lib, the web client copied in).
  const { stdout } = await run("npm", ["pack", "--pack-destination", work, "--silent"], { cwd: repo, env: { ...process.env, npm_config_loglevel: "error" }, maxBuffer: 16 << 20 });
  tarball = join(work, stdout.trim().split("\n").pop()!);
  packSeconds = (performance.now() - t) / 1000;

  t = performance.now();
  const repoPkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as { version: string; dependencies: Record<string, string>; devDependencies: Record<string, string> };
  const lock = JSON.parse(readFileSync(join(repo, "package-lock.json"), "utf8")) as { packages: Record<string, LockEntry> };
  const deps = { edgepipe: `file:../${tarball.split("/").pop()}`, zod: repoPkg.dependencies.zod };
  const tgz = readFileSync(tarball);
  const packed = JSON.parse((await run("tar", ["-xzOf", tarball, "package/package.json"])).stdout) as LockEntry;
  const packages: Record<string, LockEntry> = {
    "": { name: "my-pipeline", version: "1.0.0", dependencies: deps },
    "node_modules/edgepipe": {
      version: packed.version,
      resolved: deps.edgepipe,
      integrity: `sha512-${createHash("sha512").update(tgz).digest("base64")}`,
      license: packed.license,
      dependencies: packed.dependencies,
      bin: packed.bin,
      engines: packed.engines,
      peerDependencies: packed.peerDependencies,
      peerDependenciesMeta: packed.peerDependenciesMeta,
    },
    ...lockClosure(lock.packages, Object.keys(repoPkg.dependencies)),
  };
  mkdirSync(project);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "my-pipeline", version: "1.0.0", private: true, type: "module", dependencies: deps }, null, 2));
  writeFileSync(join(project, "package-lock.json"), JSON.stringify({ name: "my-pipeline", version: "1.0.0", lockfileVersion: 3, requires: true, packages }, null, 2));
  writeFileSync(join(project, "pipeline.ts"), PIPELINE_TS);
  writeFileSync(join(project, "types-check.ts"), TYPES_TS);
  writeFileSync(
    join(project, "tsconfig.json"),
    JSON.stringify({ compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, skipLibCheck: true, lib: ["ES2022", "DOM"], types: [] }, files: ["pipeline.ts", "types-check.ts"] }),
  );
  await run("npm", ["ci", "--offline", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: project, maxBuffer: 16 << 20 });
  installSeconds = (performance.now() - t) / 1000;
  // wrangler (an optional peer, ~100 MB with workerd) is linked from this repository instead of
  // copied: the bundle is still built from the project's own files and its installed edgepipe.
  symlinkSync(join(repo, "node_modules", "wrangler"), join(project, "node_modules", "wrangler"), "dir");
  console.log(`package: npm pack ${packSeconds.toFixed(1)} s (${tgz.length} bytes), offline install ${installSeconds.toFixed(1)} s`);
}, 180_000);

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

// Independent checks of one installed project: run side by side (type-check and bundle are CPU, the run mostly waits).
// Bounds of 120 s: each takes seconds on a quiet machine; a shared, loaded one is far slower.
describe.concurrent("the packed package in a fresh project", () => {
  it("holds the built modules, declarations, web client, LICENSE, and no sources or tests", async () => {
    const files = (await run("tar", ["-tzf", tarball])).stdout.split("\n").filter(Boolean);
    expect(files).toEqual(expect.arrayContaining(["package/LICENSE", "package/package.json", "package/dist/lib/functions/index.js", "package/dist/lib/functions/index.d.ts", "package/dist/lib/worker-host/bin.js", "package/dist/lib/web/dist/index.html"]));
    expect(files.filter((f) => /\.test\.|^package\/(tests|functions|worker-host|web\/src|lua)\//.test(f))).toEqual([]);
    const installed = JSON.parse(readFileSync(join(project, "node_modules/edgepipe/package.json"), "utf8")) as { license: string; private?: boolean };
    expect(installed.license).toBe("MIT");
    expect(installed.private).toBeUndefined();
  });

  it("type-checks the user's pipeline against the published .d.ts (NodeNext resolution)", async () => {
    const tsc = join(repo, "node_modules/typescript/bin/tsc");
    const result = await run(process.execPath, [tsc, "-p", "tsconfig.json"], { cwd: project }).catch((err: { stdout: string }) => ({ stdout: err.stdout, failed: true }));
    expect(result, result.stdout).not.toHaveProperty("failed");
  }, 120_000);

  it("npx edgepipe start --pipeline ./pipeline.ts runs it end to end on the embedded server, web client included", async () => {
    const port = await freePort();
    const child = spawn("npx", ["--no-install", "edgepipe", "start", "--pipeline", "./pipeline.ts"], {
      cwd: project,
      env: { ...process.env, PORT: String(port), DEMO: "off", VALKEY_URL: "", VALKEY_DATA_DIR: join(work, "data") },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let out = "";
    child.stdout!.on("data", (d) => (out += d));
    child.stderr!.on("data", (d) => (out += d));
    // "close": the bin (npm exec's child) holds the pipes until it has finished its shutdown.
    const closed = new Promise<void>((r) => child.on("close", () => r()));
    try {
      const url = await eventually(() => /listening on (\S+)/.exec(out)?.[1], { timeoutMs: 30_000 }).catch((err) => {
        throw new Error(`${(err as Error).message}\n${out}`);
      });
      expect(out).toContain('pipeline "wordcounter" (./pipeline.ts, from --pipeline): stages split -> count');
      const posted = await fetch(`${url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads: [{ text: "edge pipelines on valkey" }] }) });
      expect(posted.status).toBe(202);
      const [runId] = ((await posted.json()) as { runIds: string[] }).runIds;
      const done = await eventually(async () => {
        const r = (await (await fetch(`${url}/v1/runs/${runId}`)).json()) as { status: string; steps: Array<{ stage: string; result: unknown }> };
        return r.status === "completed" ? r : null;
      });
      expect(done.steps.map((s) => [s.stage, s.result])).toEqual([
        ["split", { split: true }],
        ["count", { words: 4, longest: "pipelines" }],
      ]);
      expect((await fetch(`${url}/v1/articles`, { method: "POST" })).status).toBe(404);
      const page = await fetch(`${url}/`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('<div id="app">');
    } finally {
      // Ctrl-C in a terminal signals the whole group: npm exec and the bin it runs.
      if (child.pid && child.exitCode === null) process.kill(-child.pid, "SIGINT");
    }
    await closed;
    expect(out).toContain("stopped cleanly");
    // The embedded server went with it (the launcher removes its pidfile after the server exits).
    expect(existsSync(join(work, "data", "launcher.json"))).toBe(false);
  }, 120_000);

  it("npx edgepipe build bundles its Worker offline (wrangler deploy --dry-run), and workerd runs it", async () => {
    const outdir = join(work, "worker");
    const { stdout } = await run("npx", ["--no-install", "edgepipe", "build", "--pipeline", "./pipeline.ts", "--outdir", outdir], { cwd: project, env: { ...process.env, WRANGLER_SEND_METRICS: "false" }, maxBuffer: 16 << 20 });
    expect(stdout).toContain("worker bundle:");
    const bundle = inspectBundle(join(outdir, "entry.js"));
    expect(bundle.nodeImports).toEqual([]);
    expect(readdirSync(outdir)).toContain("entry.js");
    const mf = new Miniflare({ modules: [{ type: "ESModule", path: bundle.scriptPath }], modulesRoot: outdir, compatibilityDate: DEFAULT_COMPATIBILITY_DATE });
    try {
      // No Valkey bindings: health says so (503); the user's stage route exists and demands a signature.
      const health = await mf.dispatchFetch("http://edge/health");
      expect(health.status).toBe(503);
      expect((await mf.dispatchFetch("http://edge/stages/split", { method: "POST", body: "{}" })).status).toBe(401);
      expect((await mf.dispatchFetch("http://edge/stages/news", { method: "POST", body: "{}" })).status).toBe(404);
    } finally {
      await mf.dispose();
    }
    expect(existsSync(join(project, ".wrangler/edgepipe/entry.ts"))).toBe(true);
  }, 120_000);
});
