/**
 * What tests/docs.test.ts and tests/docs-types.slow.test.ts share: the schemas
 * the docs are checked against, and a document with one of each mistake the
 * checks must catch (so that they can fail).
 */
import { Settings } from "../../functions/config";
import { NewsSettings } from "../../functions/news/config";
import { HostConfig } from "../../worker-host/config";
import type { Doc, Facts } from "./docs-check";

/** Names in the docs that belong to other projects, not to this one's code. */
export const EXTERNAL_NAMES: Record<string, string> = {
  CLUSTER_WRITABLE_DELAY: "a constant of the Valkey server's source (docs/cluster.md)",
  NODE_OPTIONS: "Node.js's own variable",
};

/** Sections of docs/configuration.md and the schema each must list exactly. */
export const CONFIG_SECTIONS = { Host: "HostConfig", "Framework settings": "Settings", "News app": "NewsSettings" };
export const SCHEMAS = { HostConfig, Settings, NewsSettings } as unknown as Facts["schemas"];

export const SELFTEST_DOC = "docs/__docs-test-selftest__.md";

/** A document with one of each mistake the checks must catch. */
export const BROKEN: Doc = {
  path: SELFTEST_DOC,
  text: [
    "# Broken on purpose",
    "",
    "See [a page](nowhere.md) and [a heading](api.md#no-such-heading). Set `NO_SUCH_SETTING` or `npm run no-such-script`.",
    "",
    "```ts",
    "// broken.ts",
    'import { definePipeline, removedExport } from "edgepipe";',
    'export default definePipeline({ name: "broken", stages: [removedExport] });',
    "```",
    "",
    "```sh",
    "NOT_A_VARIABLE=1 npm start",
    "BATCH_SIZE=0 npm start -- --no-such-flag",
    "npx tsx worker-host/tools/no-such-tool.ts",
    "```",
    "",
    "```sh",
    "curl localhost:8787/v1/no-such-route",
    "curl -X POST localhost:8787/v1/runs -H 'content-type: application/json' -d '{\"payloads\":[{\"text\":\"x\"}]}'   # 200",
    "```",
    "",
    "```",
    "a block without a language",
    "```",
  ].join("\n"),
};
