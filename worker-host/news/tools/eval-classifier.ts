/**
 * Evaluates the offline topic classifier on the AG News test split.
 * Run: npm run eval:classifier [-- path/to/ag_news_test.csv]
 * Default file: ../shared/data/ag_news_test.csv relative to the project root.
 * Prints accuracy, the 4x4 confusion matrix (AG class x predicted AG class),
 * the distribution over all topics and the throughput.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { articlesFromCsv } from "../../../functions/news/csv";
import { AG_CLASSES, TOPICS, agLabelOf, classifyTopic, type Topic } from "../../../functions/news/classify";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const DEFAULT_AG_NEWS_PATH = join(root, "..", "shared", "data", "ag_news_test.csv");

export interface ClassifierEvaluation {
  total: number;
  correct: number;
  accuracy: number;
  /** confusion[actual - 1][predicted - 1] */
  confusion: number[][];
  topics: Record<Topic, number>;
  seconds: number;
}

/** Classifies every labelled article and tallies the results. */
export function evaluateClassifier(articles: Array<{ title: string; body: string; label?: number }>): ClassifierEvaluation {
  const confusion = [0, 1, 2, 3].map(() => [0, 0, 0, 0]);
  const topics = Object.fromEntries(TOPICS.map((t) => [t, 0])) as Record<Topic, number>;
  let correct = 0;
  let total = 0;
  const started = performance.now();
  for (const article of articles) {
    if (!article.label || article.label < 1 || article.label > 4) continue;
    const { topic } = classifyTopic(article.title, article.body);
    const predicted = agLabelOf(topic);
    topics[topic]++;
    confusion[article.label - 1][predicted - 1]++;
    if (predicted === article.label) correct++;
    total++;
  }
  const seconds = (performance.now() - started) / 1000;
  return { total, correct, accuracy: total ? correct / total : 0, confusion, topics, seconds };
}

function formatReport(e: ClassifierEvaluation, path: string): string {
  const width = 10;
  const pad = (s: string | number) => String(s).padStart(width);
  const lines = [
    `file: ${path}`,
    `accuracy: ${(e.accuracy * 100).toFixed(2)}% (${e.correct}/${e.total})`,
    "",
    "confusion matrix (rows: AG class, columns: predicted AG class)",
    pad("") + AG_CLASSES.map(pad).join("") + pad("recall"),
    ...e.confusion.map((row, i) => {
      const sum = row.reduce((a, b) => a + b, 0);
      return pad(AG_CLASSES[i]) + row.map(pad).join("") + pad(sum ? `${((row[i] / sum) * 100).toFixed(1)}%` : "-");
    }),
    "",
    "predicted topics (all 11)",
    ...TOPICS.map((t) => `  ${t.padEnd(14)} ${String(e.topics[t]).padStart(6)}  -> ${AG_CLASSES[agLabelOf(t) - 1]}`),
    "",
    `throughput: ${Math.round(e.total / e.seconds).toLocaleString("en-US")} items/s (${e.total} items in ${e.seconds.toFixed(3)} s, one core)`,
  ];
  return lines.join("\n");
}

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1]);
if (isMain) {
  const path = resolve(process.argv[2] ?? DEFAULT_AG_NEWS_PATH);
  if (!existsSync(path)) {
    console.error(
      `AG News test file not found: ${path}\n` +
        "Pass its path as an argument (npm run eval:classifier -- /path/to/ag_news_test.csv) " +
        "or place it at ../shared/data/ag_news_test.csv relative to the project root.",
    );
    process.exit(1);
  }
  const articles = articlesFromCsv(readFileSync(path, "utf8"));
  // Warm up on a slice so the figure reflects steady state, not lexicon compilation and JIT.
  for (const a of articles.slice(0, 500)) classifyTopic(a.title, a.body);
  console.log(formatReport(evaluateClassifier(articles), path));
}
