/**
 * vitest globalSetup: builds web/dist once (when missing or older than
 * web/src) before any test file runs, so parallel files never build it twice,
 * and provides a directory for this run (`inject("testRunDir")`) where files
 * share what is built once per run (tests/helpers/news-bundle.ts); it is
 * removed at the end. Also builds (or finds in node_modules/.cache) the Node
 * entries tests start as child processes (tests/helpers/node-entry.ts).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { ensureWebBuild } from "../worker-host/static-files";
import { nodeBundle } from "../worker-host/tools/node-bundle";
import { TEST_NODE_ENTRIES, TEST_NODE_PACKAGES } from "./helpers/node-entry";

declare module "vitest" {
  export interface ProvidedContext {
    testRunDir: string;
  }
}

export default async function setup(project: TestProject): Promise<() => void> {
  if (!ensureWebBuild()) throw new Error("web client build failed (npm run build:web)");
  const dir = mkdtempSync(join(tmpdir(), "edgepipe-test-run-"));
  project.provide("testRunDir", dir);
  // The Node entries tests start as child processes, pre-built (tests/helpers/node-entry.ts).
  const tsx = process.env.EDGEPIPE_TEST_NODE === "tsx";
  project.provide("nodeBundle", tsx ? undefined : await nodeBundle({ name: "tests", entries: TEST_NODE_ENTRIES, packages: TEST_NODE_PACKAGES, sources: ["worker-host", "functions", "lua", "tests/fixtures", "tests/helpers"] }));
  return () => rmSync(dir, { recursive: true, force: true });
}
