/**
 * The README's first replay example on a fresh clone: `npm run replay --
 * worker-host/news/sample-articles.jsonl` against a running news app. The
 * sample ships with the repository (50 articles of the news demo generator,
 * reproducible with `npm run gen:sample`), so it needs no ../shared data.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import newsApp from "../functions/news/index";
import { mountApp } from "../functions/edge-app";
import { randomHex } from "../functions/envelope";
import { loadConfig } from "../worker-host/config";
import { startRuntime, type Runtime } from "../worker-host/runtime";
import { readArticlesFile } from "../worker-host/news/replay";
import { SAMPLE_ARTICLES_FILE, sampleArticlesJsonl } from "../worker-host/news/sample-work";
import { eventually, startTestValkey, type TestValkey } from "./helpers/valkey";

const run = promisify(execFile);
let v: TestValkey;
let rt: Runtime;

beforeAll(async () => {
  v = await startTestValkey();
  const config = loadConfig({ VALKEY_URL: v.url, PORT: "0", KEY_PREFIX: `rs${randomHex(3)}`, WEB_DIR: "" }, { appSettings: newsApp.settings });
  rt = await startRuntime({ config, pipeline: newsApp.pipeline, app: mountApp(newsApp), log: () => {} });
});

afterAll(async () => {
  await rt?.close();
  await v?.stop();
});

describe("the shipped sample article file", () => {
  it("is what the demo generator makes, and every row is a valid article", () => {
    expect(readFileSync(SAMPLE_ARTICLES_FILE, "utf8")).toBe(sampleArticlesJsonl());
    const { articles, invalid } = readArticlesFile(SAMPLE_ARTICLES_FILE);
    expect([articles.length, invalid]).toEqual([50, 0]);
  });

  it("npm run replay -- worker-host/news/sample-articles.jsonl ingests all 50 into a running app", async () => {
    const { stderr } = await run("npm", ["run", "--silent", "replay", "--", "worker-host/news/sample-articles.jsonl", "--url", rt.url, "--quiet"], { env: { ...process.env, VALKEY_URL: "" } });
    expect(stderr).toContain("worker-host/news/sample-articles.jsonl: 50 articles; sending 50");
    const topics = await eventually(async () => {
      const body = (await (await fetch(`${rt.url}/v1/topics`)).json()) as { topics: Array<{ articles: number }> };
      return body.topics.reduce((s, t) => s + t.articles, 0) === 50 ? body.topics : null;
    });
    expect(topics.length).toBeGreaterThan(1);
  });
});
