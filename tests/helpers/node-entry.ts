/**
 * How a test starts one of the repository's Node entries in a child process:
 * `spawn(process.execPath, nodeArgs("worker-host/cli.ts", ["start"]))`.
 *
 * By default the entry runs from the bundle tests/global-setup.ts builds once
 * per run (worker-host/tools/node-bundle.ts): the same sources compiled by
 * esbuild, which start in a third of tsx's CPU time. Pipeline modules are
 * still named by their source paths, and a user's own pipeline module (one a
 * docs page writes, importing `edgepipe` and `zod`) loads from its file.
 * `EDGEPIPE_TEST_NODE=tsx npm test` runs every such child with
 * `node --import tsx <source>` instead, `npm start`'s exact command.
 */
import { inject } from "vitest";
import type { NodeBundle } from "../../worker-host/tools/node-bundle";

/** Every source a test runs as a child process, or names as its pipeline module. */
export const TEST_NODE_ENTRIES: Record<string, string> = {
  cli: "worker-host/cli.ts",
  acl: "worker-host/acl.ts",
  "migrate-tags": "worker-host/tools/migrate-tags.ts",
  "fanout-child": "tests/helpers/fanout-child.ts",
  "launch-and-wait": "tests/fixtures/launch-and-wait.ts",
  "launch-cluster-and-wait": "tests/fixtures/launch-cluster-and-wait.ts",
  // Pipeline modules (--pipeline, PIPELINE, package.json's edgepipe.pipeline).
  news: "functions/news/index.ts",
  example: "functions/example/pipeline.ts",
  greeting: "tests/fixtures/greeting-app.ts",
  "not-a-pipeline": "tests/fixtures/not-a-pipeline.ts",
  "flow-limit": "tests/fixtures/flow-limit-pipeline.ts",
  "host-share": "tests/fixtures/host-share-pipeline.ts",
};

/** What a user's own module (a pipeline a docs page writes) imports from the bundle, as from the installed package. */
export const TEST_NODE_PACKAGES: Record<string, string> = {
  edgepipe: "functions/index.ts",
  "edgepipe/host": "worker-host/index.ts",
  "edgepipe/news": "functions/news/index.ts",
  zod: "zod",
  hono: "hono",
};

const BY_SOURCE = new Map(Object.entries(TEST_NODE_ENTRIES).map(([name, file]) => [file, name]));

/** Node's arguments for running `source` (a path relative to the repository root) with `args`. */
export function nodeArgs(source: string, args: string[] = []): string[] {
  const bundle = inject("nodeBundle");
  if (!bundle) return ["--import", "tsx", source, ...args];
  const name = BY_SOURCE.get(source);
  if (!name) throw new Error(`${source} is not in TEST_NODE_ENTRIES (tests/helpers/node-entry.ts)`);
  return ["--import", bundle.register, bundle.entries[name]!, ...args];
}

declare module "vitest" {
  export interface ProvidedContext {
    /** The pre-built entries; undefined with EDGEPIPE_TEST_NODE=tsx. */
    nodeBundle: NodeBundle | undefined;
  }
}
