/**
 * vitest globalSetup: builds web/dist once (when missing or older than
 * web/src) before any test file runs, so parallel files never build it twice,
 * and provides a directory for this run (`inject("testRunDir")`) where files
 * share what is built once per run (tests/helpers/news-bundle.ts); it is
 * removed at the end.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { ensureWebBuild } from "../worker-host/static-files";

declare module "vitest" {
  export interface ProvidedContext {
    testRunDir: string;
  }
}

export default function setup(project: TestProject): () => void {
  if (!ensureWebBuild()) throw new Error("web client build failed (npm run build:web)");
  const dir = mkdtempSync(join(tmpdir(), "edgepipe-test-run-"));
  project.provide("testRunDir", dir);
  return () => rmSync(dir, { recursive: true, force: true });
}
