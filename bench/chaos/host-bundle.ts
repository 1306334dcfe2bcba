/**
 * The chaos hosts' start-up, pre-built: `npm start`'s own entry
 * (worker-host/cli.ts) and the chaos app, compiled once per process by
 * esbuild into plain ES modules (code split, so the host and the app share
 * one copy of the framework: `instanceof StageError` still holds), packages
 * included. A host process then starts with plain `node` from two files
 * instead of compiling its TypeScript through tsx and resolving hundreds of
 * package modules at every start: about 1 s instead of 4-5 s at machine load
 * 19, which was most of a reduced chaos run's time.
 * `--host-start tsx` (ChaosOptions.hostStart) runs `npm start`'s exact command instead.
 */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { build } from "esbuild";

export interface HostBundle {
  /** The CLI entry: `node <cli> start --pipeline <app>`. */
  cli: string;
  app: string;
}

let built: Promise<HostBundle> | undefined;

/** Builds (once per process) into node_modules/.cache (a package that resolves files at run time still finds the project's node_modules). */
export function hostBundle(): Promise<HostBundle> {
  built ??= (async () => {
    const outdir = resolve("node_modules/.cache/edgepipe-chaos", `${process.pid}-${Date.now().toString(36)}`);
    mkdirSync(outdir, { recursive: true });
    await build({
      entryPoints: { cli: resolve("worker-host/cli.ts"), app: resolve("bench/chaos/chaos-app.ts") },
      outdir,
      bundle: true,
      splitting: true,
      format: "esm",
      platform: "node",
      target: "node20",
      outExtension: { ".js": ".mjs" },
      // Bundled CommonJS packages call require() for node built-ins.
      banner: { js: "import { createRequire as __edgepipeRequire } from 'node:module'; const require = __edgepipeRequire(import.meta.url);" },
      logLevel: "warning",
    });
    return { cli: join(outdir, "cli.mjs"), app: join(outdir, "app.mjs") };
  })();
  return built;
}
