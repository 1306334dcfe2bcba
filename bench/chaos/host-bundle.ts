/**
 * The chaos hosts' start-up, pre-built: `npm start`'s own entry
 * (worker-host/cli.ts) and the chaos app, compiled by esbuild
 * (worker-host/tools/node-bundle.ts: code split, so the host and the app share
 * one copy of the framework, packages included). A host process then starts
 * with plain `node` from a few files instead of compiling its TypeScript
 * through tsx and resolving hundreds of package modules at every start: about
 * 1 s instead of 4-5 s at machine load 19, which was most of a reduced chaos
 * run's time. `--host-start tsx` (ChaosOptions.hostStart) runs `npm start`'s
 * exact command instead.
 *
 * Kept under node_modules/.cache/edgepipe-bundles/chaos-<hash of the sources
 * and the lock file>, so runs of the same code share one and skip the build.
 */
import { nodeBundle } from "../../worker-host/tools/node-bundle";

export interface HostBundle {
  /** The CLI entry: `node <cli> start --pipeline <app>`. */
  cli: string;
  app: string;
}

export async function hostBundle(): Promise<HostBundle> {
  const bundle = await nodeBundle({
    name: "chaos",
    entries: { cli: "worker-host/cli.ts", app: "bench/chaos/chaos-app.ts" },
    sources: ["worker-host", "functions", "lua", "bench/chaos"],
  });
  return { cli: bundle.entries.cli!, app: bundle.entries.app! };
}
