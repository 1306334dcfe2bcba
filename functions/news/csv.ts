/**
 * Readers for article files (CSV and JSON Lines), used by the replay CLI.
 * Pure string code, so it runs on Workers too.
 */

/**
 * Parses RFC 4180 CSV: quoted fields, doubled quotes (`""`), commas and line
 * breaks inside quotes, LF or CRLF line ends. A trailing line break does not
 * make an extra empty row; an empty line in the middle becomes `[""]`.
 */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0; // byte-order mark from spreadsheet exports
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
        i++;
        continue;
      }
      // Copy the run up to the next quote in one slice: fields can be long.
      const next = text.indexOf('"', i);
      const end = next === -1 ? n : next;
      field += text.slice(i, end);
      i = end;
      continue;
    }
    if (c === '"' && field === "") {
      quoted = true;
      i++;
    } else if (c === ",") {
      row.push(field);
      field = "";
      i++;
    } else if (c === "\r" || c === "\n") {
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
      i += c === "\r" && text[i + 1] === "\n" ? 2 : 1;
    } else {
      field += c;
      i++;
    }
  }
  if (quoted) throw new Error("CSV: unterminated quoted field at end of input");
  if (field !== "" || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

/** One article read from a file; `label` is the AG News class (1-4) when present. */
export interface CsvArticle {
  title: string;
  body: string;
  label?: number;
}

const TITLE_NAMES = new Set(["title", "headline"]);
const BODY_NAMES = new Set(["body", "description", "text", "content", "summary"]);
const LABEL_NAMES = new Set(["label", "class", "class index", "class_index"]);

/**
 * Reads articles from CSV. Accepted layouts:
 * - AG News: header `label,title,description` (also `Class Index,Title,Description`),
 *   or no header and three columns whose first is 1-4;
 * - a header naming a title column (`title`/`headline`) and a body column
 *   (`body`/`description`/`text`/`content`/`summary`), in any order.
 * Throws an Error describing the accepted headers for anything else.
 */
export function articlesFromCsv(text: string): CsvArticle[] {
  const rows = parseCsv(text).filter((r) => !(r.length === 1 && r[0].trim() === ""));
  if (rows.length === 0) return [];
  const header = rows[0].map((h) => h.trim().toLowerCase());
  const titleCol = header.findIndex((h) => TITLE_NAMES.has(h));
  const bodyCol = header.findIndex((h) => BODY_NAMES.has(h));
  const labelCol = header.findIndex((h) => LABEL_NAMES.has(h));

  let dataRows: string[][];
  let cols: { title: number; body: number; label: number };
  if (titleCol >= 0 && bodyCol >= 0) {
    dataRows = rows.slice(1);
    cols = { title: titleCol, body: bodyCol, label: labelCol };
  } else if (header.length === 3 && /^[1-4]$/.test(header[0])) {
    dataRows = rows; // AG News without a header line
    cols = { title: 1, body: 2, label: 0 };
  } else {
    throw new Error(
      `CSV: unknown header ${JSON.stringify(rows[0].slice(0, 6))}; expected "label,title,description" (AG News), ` +
        `no header with 3 columns label(1-4),title,description, or a header with "title" and "body" columns`,
    );
  }

  const articles: CsvArticle[] = [];
  const width = Math.max(cols.title, cols.body, cols.label) + 1;
  dataRows.forEach((row, index) => {
    if (row.length < width) {
      const line = index + (dataRows === rows ? 1 : 2);
      throw new Error(`CSV: record ${line} has ${row.length} column(s), expected at least ${width}`);
    }
    const article: CsvArticle = { title: row[cols.title], body: row[cols.body] };
    if (cols.label >= 0) {
      const label = Number(row[cols.label].trim());
      if (Number.isInteger(label)) article.label = label;
    }
    articles.push(article);
  });
  return articles;
}

/** One article read from JSON Lines. */
export interface JsonlArticle {
  title: string;
  body: string;
  id?: string;
  url?: string;
  source?: string;
  publishedAt?: string;
}

function optionalString(value: unknown, field: string, line: number): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "string") return value;
  if (typeof value === "number" && field === "id") return String(value);
  throw new Error(`JSONL line ${line}: "${field}" must be a string`);
}

/**
 * Reads one JSON object per line: `title` plus `body` (or `description`),
 * optional `id`, `url`, `source`, `publishedAt`. Blank lines are skipped.
 * Throws an Error naming the 1-based line number of the first bad line.
 */
export function articlesFromJsonl(text: string): JsonlArticle[] {
  const articles: JsonlArticle[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const line = index + 1;
    if (raw.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      throw new Error(`JSONL line ${line}: invalid JSON (${(err as Error).message})`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new Error(`JSONL line ${line}: expected a JSON object`);
    }
    const record = value as Record<string, unknown>;
    const title = record.title;
    const body = record.body ?? record.description;
    if (typeof title !== "string" || title.trim() === "") {
      throw new Error(`JSONL line ${line}: missing string "title"`);
    }
    if (typeof body !== "string") {
      throw new Error(`JSONL line ${line}: missing string "body" (or "description")`);
    }
    const article: JsonlArticle = { title, body };
    for (const field of ["id", "url", "source", "publishedAt"] as const) {
      const v = optionalString(record[field], field, line);
      if (v !== undefined) article[field] = v;
    }
    articles.push(article);
  });
  return articles;
}
