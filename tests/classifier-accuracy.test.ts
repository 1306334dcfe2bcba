import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { articlesFromCsv } from "../functions/news/csv";
import { evaluateClassifier } from "../worker-host/news/tools/eval-classifier";

// ../shared/data relative to the project root (this file lives in <root>/tests).
const agNewsPath = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "shared", "data", "ag_news_test.csv");
const exists = existsSync(agNewsPath);
if (!exists) {
  console.warn(
    `classifier-accuracy: skipped, AG News test file not found at ${agNewsPath} ` +
      "(it lives outside the repository in ../shared/data; see README)",
  );
}

describe("offline classifier on AG News", () => {
  it.skipIf(!exists)("classifies all 7,600 test items with accuracy >= 0.80", () => {
    const articles = articlesFromCsv(readFileSync(agNewsPath, "utf8"));
    expect(articles).toHaveLength(7600);
    const evaluation = evaluateClassifier(articles);
    expect(evaluation.total).toBe(7600);
    console.log(
      `classifier accuracy ${(evaluation.accuracy * 100).toFixed(2)}% on ${evaluation.total} items; ` +
        `confusion (rows World, Sports, Business, Sci/Tech): ${JSON.stringify(evaluation.confusion)}`,
    );
    expect(evaluation.accuracy).toBeGreaterThanOrEqual(0.8);
  });
});
