/**
 * The chaos hosts' start-up, pre-built: `npm start`'s own entry
 * (worker-host/cli.ts) and the chaos app, compiled by esbuild into plain ES
 * modules (code split, so the host and the app share one copy of the
 * framework: `instanceof StageError` still holds), packages included. A host
 * process then starts with plain `node` from two files instead of compiling
 * its TypeScript through tsx and resolving hundreds of package modules at
 * every start: about 1 s instead of 4-5 s at machine load 19, which was most
 * of a reduced chaos run's time.
 * `--host-start tsx` (ChaosOptions.hostStart) runs `npm start`'s exact command instead.
 *
 * The build is kept under node_modules/.cache/edgepipe-chaos/<hash of the
 * sources and the lock file>, so runs of the same code share one (about 8 MB)
 * and skip the build; builds of other code older than a day are removed.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { build } from "esbuild";

export interface HostBundle {
  /** The CLI entry: `node <cli> start --pipeline <app>`. */
  cli: string;
  app: string;
}

const CACHE = resolve("node_modules/.cache/edgepipe-chaos");
const SOURCES = ["worker-host", "functions", "bench/chaos"];

/** Hash of every TypeScript source the bundle can include, and of the lock file. */
function sourceHash(): string {
  const hash = createHash("sha256");
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (/\.(ts|js|json|lua)$/.test(name)) hash.update(path).update(readFileSync(path));
    }
  };
  for (const dir of SOURCES) walk(resolve(dir));
  hash.update(readFileSync(resolve("package-lock.json")));
  return hash.digest("hex").slice(0, 16);
}

let built: Promise<HostBundle> | undefined;

/** Builds (once per version of the code) into node_modules/.cache, where a package that resolves files at run time still finds node_modules. */
export function hostBundle(): Promise<HostBundle> {
  built ??= (async () => {
    const outdir = join(CACHE, sourceHash());
    const bundle = { cli: join(outdir, "cli.mjs"), app: join(outdir, "app.mjs") };
    if (existsSync(bundle.cli) && existsSync(bundle.app)) return bundle;
    // Built aside and renamed into place, so a run beside this one never sees half a bundle.
    const tmp = `${outdir}.${process.pid}.tmp`;
    mkdirSync(tmp, { recursive: true });
    await build({
      entryPoints: { cli: resolve("worker-host/cli.ts"), app: resolve("bench/chaos/chaos-app.ts") },
      outdir: tmp,
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
    try {
      renameSync(tmp, outdir);
    } catch {
      // Another run built the same code first: use its bundle.
      rmSync(tmp, { recursive: true, force: true });
    }
    const dayAgo = Date.now() - 24 * 3600_000;
    for (const name of readdirSync(CACHE)) {
      const path = join(CACHE, name);
      if (path !== outdir && statSync(path).mtimeMs < dayAgo) rmSync(path, { recursive: true, force: true });
    }
    return bundle;
  })();
  return built;
}
