/**
 * Sample inputs for measuring and end-to-end testing the repository's
 * pipelines: the news pipeline gets real AG News items
 * (../shared/data/ag_news_test.csv when present, else the project's own demo
 * generator), the example pipeline gets texts. Also the small article file
 * that ships with the repository for the README's first replay
 * (sample-articles.jsonl; `npm run gen:sample` rewrites it).
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { articlesFromCsv } from "../../functions/news/csv";
import { generateDemoArticles } from "../../functions/news/demo-feed";
import { settingsFor } from "../../functions/config";
import { seedDemoUsers } from "../../functions/news/users";
import type { Pipeline } from "../../functions/pipeline";
import { redisFromEnv, type AppEnv } from "../../functions/redis";

/** Where the AG News test split lives relative to the project root (AG_NEWS_CSV overrides). */
export const AG_NEWS_CSV = process.env.AG_NEWS_CSV ?? resolve("../shared/data/ag_news_test.csv");

/** `count` payloads for the pipeline's entry stage, and where they came from. */
export function samplePayloads(pipeline: Pipeline, count: number): { source: string; payloads: unknown[] } {
  if (pipeline.name === "example") {
    return { source: "generated texts", payloads: Array.from({ length: count }, (_, i) => ({ text: `  sample ${i}:  ${"word ".repeat(1 + (i % 20))}  end ` })) };
  }
  if (pipeline.name === "news") {
    if (existsSync(AG_NEWS_CSV)) {
      const rows = articlesFromCsv(readFileSync(AG_NEWS_CSV, "utf8"));
      const payloads = Array.from({ length: count }, (_, i) => {
        const row = rows[i % rows.length];
        // Past one pass over the file, vary the body so items are not exact duplicates.
        const lap = Math.floor(i / rows.length);
        return { title: row.title, body: lap === 0 ? row.body : `${row.body} (${lap})`, source: "ag_news" };
      });
      return { source: `AG News (${AG_NEWS_CSV})`, payloads };
    }
    return { source: "demo generator (AG News CSV absent)", payloads: generateDemoArticles(count, { seed: 7 }).map(({ intendedTopic: _t, ...a }) => a) };
  }
  throw new Error(`no sample payloads for pipeline ${pipeline.name}; add them in worker-host/sample-work.ts`);
}

/** Prepares what the sample work needs besides payloads: demo subscribers for the news pipeline. */
export async function prepareSampleWorld(pipeline: Pipeline, env: AppEnv, { users = 1000 }: { users?: number } = {}): Promise<string> {
  if (pipeline.name !== "news" || users === 0) return "";
  const { keys } = settingsFor(env);
  const seeded = await seedDemoUsers(redisFromEnv(env), keys, users);
  return `${seeded.length} demo users`;
}

/** 50 articles made by the news demo generator (seed 42), one JSON object per line: `npm run replay -- <this file>`. */
export const SAMPLE_ARTICLES_FILE = fileURLToPath(new URL("./sample-articles.jsonl", import.meta.url));

/** The content of SAMPLE_ARTICLES_FILE, as the generator makes it (the ids are left to the server). */
export function sampleArticlesJsonl(): string {
  return generateDemoArticles(50, { seed: 42 }).map(({ intendedTopic: _t, id: _id, ...article }) => JSON.stringify(article)).join("\n") + "\n";
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1]) && process.argv.includes("--write")) {
  writeFileSync(SAMPLE_ARTICLES_FILE, sampleArticlesJsonl());
  console.log(`wrote ${SAMPLE_ARTICLES_FILE}`);
}
