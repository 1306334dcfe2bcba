/**
 * Article payloads for the benchmark: real AG News items from
 * ../shared/data/ag_news_test.csv when present, else a small generator.
 * Every article gets a unique id and URL (the news fetcher dedupes by URL and
 * content hash, so repeated items would end runs early and skew throughput).
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface BenchArticle {
  id: string;
  url: string;
  title: string;
  body: string;
  source: string;
  publishedAt: string;
}

const here = dirname(fileURLToPath(import.meta.url));
export const AG_NEWS_CSV = join(here, "..", "..", "shared", "data", "ag_news_test.csv");

/** Parses RFC 4180-ish CSV (quoted fields, doubled quotes, commas and newlines inside quotes). */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") {
      row.push(field);
      field = "";
    } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else field += ch;
  }
  if (field !== "" || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

const WORDS = "market team election launch energy court storm league profit satellite vote merger rocket season policy chip".split(" ");

function generated(i: number): { title: string; body: string } {
  const w = (k: number) => WORDS[(i * 7 + k * 13) % WORDS.length];
  return {
    title: `${w(1)} ${w(2)} ${w(3)} report ${i}`,
    body: `The ${w(4)} ${w(5)} story number ${i} covers ${w(6)}, ${w(7)} and ${w(8)} in some detail for readers.`,
  };
}

/**
 * `n` unique articles; `source` says where the text came from.
 * @example
 * const { articles, source } = loadArticles(20_000);
 */
export function loadArticles(n: number, { csvPath = AG_NEWS_CSV }: { csvPath?: string } = {}): { articles: BenchArticle[]; source: string } {
  let base: Array<{ title: string; body: string }> = [];
  let source = "generated";
  if (existsSync(csvPath)) {
    const rows = parseCsv(readFileSync(csvPath, "utf8")).slice(1).filter((r) => r.length >= 3 && r[1] && r[2]);
    base = rows.map((r) => ({ title: r[1], body: r[2] }));
    source = `${csvPath} (${base.length} rows, cycled with unique ids)`;
  }
  const at = Date.UTC(2026, 0, 1);
  const articles: BenchArticle[] = [];
  for (let i = 0; i < n; i++) {
    const { title, body } = base.length > 0 ? base[i % base.length] : generated(i);
    const round = base.length > 0 ? Math.floor(i / base.length) : 0;
    articles.push({
      id: `b${i}`,
      url: `https://news.example/bench/${i}`,
      // Cycled items differ in text too, so content-hash dedupe does not drop them.
      title: round > 0 ? `${title} (${round})` : title,
      body,
      source: "bench",
      publishedAt: new Date(at + i * 1000).toISOString(),
    });
  }
  return { articles, source };
}
