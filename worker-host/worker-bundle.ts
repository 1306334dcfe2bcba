/**
 * Builds the Workers deploy bundle offline, exactly as `npm run build:worker`
 * does (`wrangler deploy --dry-run --outdir <dir>`), and reports its size.
 * Tests and the HTTP measurement load the result in Miniflare.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, extname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";

const run = promisify(execFile);

export interface WorkerBundle {
  /** The bundled ES module (named after the config's main: worker.js, entry.js). */
  scriptPath: string;
  bytes: number;
  gzipBytes: number;
  /** `node:*` modules the bundle imports (must be none: no nodejs_compat). */
  nodeImports: string[];
}

/** Size and node:* imports of a built bundle. */
export function inspectBundle(scriptPath: string): WorkerBundle {
  const code = readFileSync(scriptPath);
  const text = code.toString("utf8");
  const nodeImports = [...new Set([...text.matchAll(/(?:from\s*|import\s*\(\s*|require\s*\(\s*)["'](node:[\w/]+)["']/g)].map((m) => m[1]))];
  return { scriptPath, bytes: statSync(scriptPath).size, gzipBytes: gzipSync(code, { level: 9 }).length, nodeImports };
}

/**
 * The wrangler CLI script: the project's own (`root`'s node_modules) first,
 * else the one installed beside edgepipe. Throws saying how to install it.
 */
export function wranglerBin(root = process.cwd()): string {
  for (const from of [join(root, "package.json"), import.meta.url]) {
    try {
      const bin = join(dirname(createRequire(from).resolve("wrangler/package.json")), "bin", "wrangler.js");
      if (existsSync(bin)) return bin;
    } catch {
      // not resolvable from here; try the next place
    }
  }
  throw new Error("wrangler is not installed: npm install --save-dev wrangler (needed for npm run dev and Worker builds)");
}

/**
 * Runs `wrangler deploy --dry-run --outdir <outdir>` (no network needed) for
 * `configPath` (default: the project's wrangler.toml).
 * @example
 * const { scriptPath, bytes } = await buildWorkerBundle({ outdir: "dist/worker" });
 */
export async function buildWorkerBundle({ outdir = "dist/worker", root = process.cwd(), configPath }: { outdir?: string; root?: string; configPath?: string } = {}): Promise<WorkerBundle> {
  // wrangler refuses a missing [assets].directory; the web build may not have run.
  if (!configPath) mkdirSync(join(root, "web/dist"), { recursive: true });
  const args = [wranglerBin(root), "deploy", "--dry-run", "--outdir", resolve(root, outdir), ...(configPath ? ["--config", resolve(root, configPath)] : [])];
  await run(process.execPath, args, {
    cwd: root,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" },
    maxBuffer: 16 * 1024 * 1024,
  });
  const main = mainOf(resolve(root, configPath ?? "wrangler.toml"));
  return inspectBundle(resolve(root, outdir, `${basename(main, extname(main))}.js`));
}

/** The `main` of a wrangler config (wrangler names the bundle after it). */
function mainOf(configPath: string): string {
  const text = readFileSync(configPath, "utf8");
  const main = configPath.endsWith(".toml") ? /^main\s*=\s*"([^"]+)"/m.exec(text)?.[1] : (JSON.parse(text) as { main?: string }).main;
  if (!main) throw new Error(`no main in ${configPath}`);
  return main;
}
