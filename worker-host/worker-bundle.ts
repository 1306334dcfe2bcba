/**
 * Builds the Workers deploy bundle offline, exactly as `npm run build:worker`
 * does (`wrangler deploy --dry-run --outdir <dir>`), and reports its size.
 * Tests and the HTTP measurement load the result in Miniflare.
 */
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";

const run = promisify(execFile);

export interface WorkerBundle {
  /** The bundled ES module (index.js). */
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
 * Runs `wrangler deploy --dry-run --outdir <outdir>` (no network needed).
 * @example
 * const { scriptPath, bytes } = await buildWorkerBundle({ outdir: "dist/worker" });
 */
export async function buildWorkerBundle({ outdir = "dist/worker", root = process.cwd() }: { outdir?: string; root?: string } = {}): Promise<WorkerBundle> {
  // wrangler refuses a missing [assets].directory; the web build may not have run.
  mkdirSync(join(root, "web/dist"), { recursive: true });
  const wrangler = join(root, "node_modules", "wrangler", "bin", "wrangler.js");
  await run(process.execPath, [wrangler, "deploy", "--dry-run", "--outdir", resolve(root, outdir)], {
    cwd: root,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" },
    maxBuffer: 16 * 1024 * 1024,
  });
  return inspectBundle(resolve(root, outdir, "index.js"));
}
