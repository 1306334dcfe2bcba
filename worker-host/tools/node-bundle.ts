/**
 * Pre-built Node entry points, for the test suite and the chaos harness: the
 * repository's own TypeScript entries (`worker-host/cli.ts`, tools, pipeline
 * modules, fixtures) compiled by esbuild into plain ES modules, code split so
 * every entry shares one copy of the framework (`instanceof StageError` still
 * holds between the CLI and a pipeline module), packages included. A child
 * process then starts with plain `node` from a few files instead of running
 * every module, packages too, through tsx's loader hooks: `edgepipe reset`
 * takes 0.45 s of CPU this way against 1.7 s through tsx (a quiet 2-core
 * machine), and a start of the whole stack saves about as much.
 *
 * What stays as it is in the sources:
 * - `import.meta.url` is the source file's URL in every source module, so
 *   paths it resolves (web/dist, the sample articles, the framework a
 *   generated Worker entry imports) point where they do under tsx. Lines that
 *   compare it with `process.argv[1]` (a script's "am I the entry" check) keep
 *   the bundle's own URL, so such a script still runs when it is the entry.
 * - A pipeline module is named by its source path (`--pipeline
 *   functions/example/pipeline.ts`), exactly as under tsx: the process runs
 *   with `--import <register>`, module hooks that map each bundled source
 *   file to its entry in the bundle.
 * - A user's own TypeScript module (a pipeline a docs page writes) loads as
 *   under tsx, compiled by esbuild as it is imported, and the packages it
 *   imports that the bundle serves (`edgepipe`, `zod`, `hono`: `packages`)
 *   resolve to the bundle's copy, so it shares the one framework and one zod.
 *   A framework or host source that is not an entry (under `guarded`) is an
 *   error naming the entries, never a second copy loaded from source.
 *
 * Builds are kept under node_modules/.cache/edgepipe-bundles/<name>-<hash of
 * the sources, the lock file and the entries>, so runs of the same code share
 * one and skip the build; older builds of the same name are removed after a day.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { build, type Plugin } from "esbuild";

export interface NodeBundleOptions {
  /** Names the cache folder: `tests`, `chaos`. */
  name: string;
  /** Entry name -> source path relative to the repository root. */
  entries: Record<string, string>;
  /** Folders whose files the build can include (hashed to name the build). */
  sources?: string[];
  /**
   * Bare specifiers a user module imports that resolve to the bundle: specifier ->
   * a source path relative to the root (`edgepipe` -> `functions/index.ts`) or a package name (`zod`).
   */
  packages?: Record<string, string>;
  /** Folders whose TypeScript must come from the bundle (default functions/ and worker-host/). */
  guarded?: string[];
  root?: string;
}

export interface NodeBundle {
  dir: string;
  /** Entry name -> the built module (absolute path). */
  entries: Record<string, string>;
  /** `node --import <register> <entry>`: maps the bundled sources' paths to their entries. */
  register: string;
}

const DEFAULT_SOURCES = ["worker-host", "functions", "lua"];

function sourceHash(root: string, options: NodeBundleOptions): string {
  const hash = createHash("sha256");
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.(ts|tsx|js|mjs|json|lua)$/.test(name)) hash.update(relative(root, path)).update(readFileSync(path));
    }
  };
  for (const dir of options.sources ?? DEFAULT_SOURCES) if (existsSync(join(root, dir))) walk(join(root, dir));
  for (const file of Object.values(options.entries)) hash.update(file).update(readFileSync(join(root, file)));
  // The root too: a build maps and names source files by their absolute paths, and checkouts
  // that share one node_modules (worktrees) share its cache.
  hash.update(JSON.stringify([root, options.entries, options.packages ?? {}, options.guarded ?? []])).update(HOOKS);
  hash.update(readFileSync(join(root, "package-lock.json")));
  return hash.digest("hex").slice(0, 16);
}

/** Keeps each source module's own `import.meta.url` (see the file comment). */
function sourceUrls(): Plugin {
  return {
    name: "edgepipe-source-urls",
    setup(b) {
      b.onLoad({ filter: /\.tsx?$/ }, (args) => {
        const path = resolve(args.path);
        if (path.includes("/node_modules/")) return undefined;
        const text = readFileSync(path, "utf8");
        if (!text.includes("import.meta.url")) return undefined;
        const url = JSON.stringify(pathToFileURL(path).href);
        const contents = text
          .split("\n")
          .map((line) => (line.includes("process.argv[1]") ? line : line.replaceAll("import.meta.url", url)))
          .join("\n");
        return { contents, loader: path.endsWith("x") ? "tsx" : "ts" };
      });
    },
  };
}

const HOOKS = `// Written by worker-host/tools/node-bundle.ts: maps bundled source modules to their entries,
// and compiles a user's own TypeScript modules as tsx would.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
let map = {};
let packages = {};
let guarded = [];
let bundleDir = "";
let entries = "";
export function initialize(data) {
  ({ map, packages, guarded, bundleDir } = data);
  entries = Object.keys(map).map((u) => fileURLToPath(u)).join(", ");
}
const isTs = (url) => url.startsWith("file:") && /\\.[cm]?tsx?$/.test(url);
export async function resolve(specifier, context, next) {
  const parent = context.parentURL ?? "";
  if (packages[specifier] && !parent.startsWith(bundleDir)) return { url: packages[specifier], shortCircuit: true, format: "module" };
  let found;
  try {
    found = await next(specifier, context);
  } catch (err) {
    // tsx resolves extensionless relative imports of TypeScript modules: ./notes -> ./notes.ts
    if (!isTs(parent) || !/^\\.\\.?\\//.test(specifier)) throw err;
    for (const ext of [".ts", ".tsx", "/index.ts"]) {
      try {
        found = await next(specifier + ext, context);
        break;
      } catch {
        // the next one
      }
    }
    if (!found) throw err;
  }
  if (isTs(found.url)) {
    const to = map[found.url];
    if (to) return { url: to, shortCircuit: true, format: "module" };
    const path = fileURLToPath(found.url);
    if (guarded.some((dir) => path.startsWith(dir))) {
      throw new Error(path + " is not in this pre-built bundle (its TypeScript entries: " + entries + "); add it to the bundle's entries, or run the source through tsx");
    }
    return { url: found.url, shortCircuit: true, format: "module" };
  }
  return found;
}
export async function load(url, context, next) {
  if (!isTs(url) || map[url]) return next(url, context);
  const path = fileURLToPath(url);
  // Loaded on first use: most processes import no module of their own.
  const { transformSync } = await import("esbuild");
  const { code } = transformSync(readFileSync(path, "utf8"), { loader: /x$/.test(path) ? "tsx" : "ts", format: "esm", target: "node20", sourcefile: path, sourcemap: "inline" });
  return { format: "module", source: code, shortCircuit: true };
}
`;

/** The entry name of a package the bundle serves: `pkg-edgepipe_host` for `edgepipe/host`. */
const packageEntry = (specifier: string) => `pkg-${specifier.replace(/[^\w-]/g, "_")}`;

const built = new Map<string, Promise<NodeBundle>>();

/** Builds (once per version of the code) into node_modules/.cache, where a package that resolves files at run time still finds node_modules. */
export function nodeBundle(options: NodeBundleOptions): Promise<NodeBundle> {
  // Real paths: Node names modules by them, and the hooks compare them.
  const root = realpathSync(resolve(options.root ?? "."));
  const key = `${root}\0${JSON.stringify(options)}`;
  let promise = built.get(key);
  if (!promise) {
    promise = buildOnce(root, options);
    built.set(key, promise);
  }
  return promise;
}

async function buildOnce(root: string, options: NodeBundleOptions): Promise<NodeBundle> {
  // The real path (node_modules may be a link): Node names a module by it, and a script's
  // "am I the entry" check compares it with process.argv[1].
  const cache = join(realpathSync(join(root, "node_modules")), ".cache", "edgepipe-bundles");
  mkdirSync(cache, { recursive: true });
  const outdir = join(cache, `${options.name}-${sourceHash(root, options)}`);
  const bundle: NodeBundle = {
    dir: outdir,
    entries: Object.fromEntries(Object.keys(options.entries).map((name) => [name, join(outdir, `${name}.mjs`)])),
    register: join(outdir, "register.mjs"),
  };
  if (existsSync(bundle.register)) return bundle;
  // Built aside and renamed into place, so a run beside this one never sees half a bundle.
  const tmp = `${outdir}.${process.pid}.tmp`;
  mkdirSync(tmp, { recursive: true });
  // A package the bundle serves is an entry of its own: a module that re-exports it.
  const packageEntries: Record<string, string> = {};
  for (const [specifier, target] of Object.entries(options.packages ?? {})) {
    const name = packageEntry(specifier);
    if (existsSync(join(root, target))) packageEntries[name] = join(root, target);
    else {
      const stub = join(tmp, "stubs", `${name}.mjs`);
      mkdirSync(join(tmp, "stubs"), { recursive: true });
      writeFileSync(stub, `export * from ${JSON.stringify(target)};\n`);
      packageEntries[name] = stub;
    }
  }
  await build({
    entryPoints: { ...Object.fromEntries(Object.entries(options.entries).map(([name, file]) => [name, join(root, file)])), ...packageEntries },
    outdir: tmp,
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    outExtension: { ".js": ".mjs" },
    // Bundled CommonJS packages call require() for node built-ins.
    banner: { js: "import { createRequire as __edgepipeRequire } from 'node:module'; const require = __edgepipeRequire(import.meta.url);" },
    plugins: [sourceUrls()],
    logLevel: "warning",
  });
  const entryUrl = (name: string) => pathToFileURL(join(outdir, `${name}.mjs`)).href;
  const map = Object.fromEntries(Object.entries(options.entries).map(([name, file]) => [pathToFileURL(join(root, file)).href, entryUrl(name)]));
  const packages = Object.fromEntries(Object.keys(options.packages ?? {}).map((specifier) => [specifier, entryUrl(packageEntry(specifier))]));
  const guarded = (options.guarded ?? ["functions", "worker-host"]).map((dir) => `${join(root, dir)}/`);
  const data = { map, packages, guarded, bundleDir: `${pathToFileURL(outdir).href}/` };
  rmSync(join(tmp, "stubs"), { recursive: true, force: true });
  writeFileSync(join(tmp, "hooks.mjs"), HOOKS);
  writeFileSync(join(tmp, "register.mjs"), `import { register } from "node:module";\nregister("./hooks.mjs", import.meta.url, { data: ${JSON.stringify(data)} });\n`);
  try {
    renameSync(tmp, outdir);
  } catch {
    // Another run built the same code first: use its bundle.
    rmSync(tmp, { recursive: true, force: true });
  }
  const dayAgo = Date.now() - 24 * 3600_000;
  for (const name of readdirSync(cache)) {
    const path = join(cache, name);
    if (path !== outdir && name.startsWith(`${options.name}-`) && statSync(path).mtimeMs < dayAgo) rmSync(path, { recursive: true, force: true });
  }
  return bundle;
}
