/**
 * vitest globalSetup: builds web/dist once (when missing or older than
 * web/src) before any test file runs, so parallel files never build it twice.
 */
import { ensureWebBuild } from "../worker-host/static-files";

export default function buildWebClientOnce(): void {
  if (!ensureWebBuild()) throw new Error("web client build failed (npm run build:web)");
}
