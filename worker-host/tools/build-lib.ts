/**
 * Builds the published package into dist/lib (npm run build:lib; `npm pack`
 * runs it as prepack): tsc emits ESM + .d.ts for functions/ and worker-host/
 * (tsconfig.lib.json), then every relative import gets the `.js` (or
 * `/index.js`) Node's ESM loader needs, checked against the emitted files,
 * and the built web client is copied to dist/lib/web/dist, where the host
 * looks for it (worker-host/static-files.ts: ../web/dist).
 *
 * Why tsc and a rewrite, not a bundler: one file out per file in keeps the
 * module graph (one StageError class for `edgepipe`, `edgepipe/host` and
 * `edgepipe/news`), and both Node 20 and wrangler's esbuild load plain ESM
 * with explicit extensions.
 */
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { ensureWebBuild, WEB_DIST_DIR } from "../static-files";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const out = join(root, "dist", "lib");

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

/** Specifiers that matched no emitted file (e.g. in a JSDoc @example); the entry imports below prove the code paths. */
const unresolved: string[] = [];

/** `./x` -> `./x.js` or `./x/index.js`, whichever was emitted. */
function withExtension(file: string, spec: string): string {
  if (/\.(m?js|json)$/.test(spec)) return spec;
  const base = resolve(dirname(file), spec);
  if (existsSync(`${base}.js`)) return `${spec}.js`;
  if (existsSync(join(base, "index.js"))) return `${spec}/index.js`;
  unresolved.push(`${relative(root, file)}: ${spec}`);
  return spec;
}

/** Rewrites the relative specifiers of static, re-export, side-effect and dynamic imports (and `import("...")` types). */
export function addExtensions(file: string, code: string): string {
  return code.replace(/((?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["'])(\.{1,2}\/[^"']*)(["'])/g, (_m, head: string, spec: string, tail: string) => head + withExtension(file, spec) + tail);
}

const started = performance.now();
rmSync(out, { recursive: true, force: true });
execFileSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", join(root, "tsconfig.lib.json")], { cwd: root, stdio: "inherit" });
let rewritten = 0;
for (const file of files(out)) {
  if (!/\.(js|d\.ts)$/.test(file)) continue;
  const code = readFileSync(file, "utf8");
  const fixed = addExtensions(file, code);
  if (fixed !== code) {
    writeFileSync(file, fixed);
    rewritten++;
  }
}
// Every entry point of package.json `exports` must load in plain Node (no tsx): a missing extension fails here, not in a user's project.
const { exports } = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { exports: Record<string, string | { default?: string }> };
for (const target of Object.values(exports)) {
  const path = typeof target === "string" ? target : target.default;
  if (path?.endsWith(".js")) await import(pathToFileURL(join(root, path)).href);
}
if (!ensureWebBuild()) throw new Error("web client build failed: the package would ship without it (npm run build:web)");
cpSync(WEB_DIST_DIR, join(out, "web", "dist"), { recursive: true });
const all = files(out);
console.log(`build:lib: ${all.filter((f) => f.endsWith(".js")).length} modules, ${all.filter((f) => f.endsWith(".d.ts")).length} declarations (${rewritten} files with imports rewritten), web client copied${unresolved.length ? `; left as written (comments): ${unresolved.join(", ")}` : ""}; dist/lib in ${((performance.now() - started) / 1000).toFixed(1)} s`);
