/**
 * Helpers to run code inside workerd (Miniflare's `miniflare` package API, not
 * the vitest workers pool): bundle a small Worker with esbuild using the
 * Workers export conditions, and start Miniflare with it.
 */
import { build } from "esbuild";
import { Miniflare } from "miniflare";

/** Workers compatibility date used by tests (the same as wrangler.toml). */
export const COMPATIBILITY_DATE = "2026-04-20";

/** Bundles a Worker entry (TypeScript ok) into one ES module, as wrangler would. */
export async function bundleWorker(entry: string): Promise<string> {
  const out = await build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    conditions: ["workerd", "worker", "browser", "import"],
    mainFields: ["module", "main"],
    write: false,
    logLevel: "silent",
  });
  return out.outputFiles[0].text;
}

/** Starts Miniflare with one module Worker and string bindings. */
export async function startWorker(script: string, bindings: Record<string, string>): Promise<Miniflare> {
  const mf = new Miniflare({ modules: true, script, bindings, compatibilityDate: COMPATIBILITY_DATE });
  await mf.ready;
  return mf;
}
