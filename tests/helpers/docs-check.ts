/**
 * The checks behind tests/docs.test.ts: reads README.md and docs/*.md, pulls
 * out every fenced code block and the inline code of the prose, and finds
 * what no longer matches the code: links and anchors that resolve nowhere,
 * environment variables no schema has, npm scripts, bins, CLI flags and repo
 * paths that do not exist, JSON that does not parse, configuration tables
 * that differ from their zod schemas, API tables that differ from the app's
 * routes. TypeScript blocks are type-checked (typeCheckBlocks) and shell
 * blocks with curl are run against a started runtime (parseCurl, in the
 * test). Pure functions of their inputs, so the test can feed them a broken
 * document and see each problem reported.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import type { z } from "zod";

export const REPO = resolve(__dirname, "..", "..");

export interface Doc {
  /** Repo-relative path, e.g. "docs/api.md". */
  path: string;
  text: string;
}

export interface Block {
  doc: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  code: string;
  /** File name the block names in its first line (`// hello.ts`), if any. */
  file?: string;
  /** Reason given by a `<!-- docs-test: skip: reason -->` marker right before the block. */
  skip?: string;
}

export interface Problem {
  doc: string;
  line: number;
  message: string;
}

/** README.md and every docs/*.md, in a stable order. */
export function readDocs(root = REPO): Doc[] {
  const docs = ["README.md", ...readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`)];
  return docs.map((path) => ({ path, text: readFileSync(join(root, path), "utf8") }));
}

const FENCE = /^(\s*)(```+|~~~+)\s*([^\s`]*)\s*$/;
const MARKER = /^\s*<!--\s*docs-test:\s*(.*?)\s*-->\s*$/;
/** Languages whose blocks are checked; anything else must be marked skip with a reason. */
export const CHECKED_LANGS: Record<string, "ts" | "sh" | "json" | "text"> = { ts: "ts", typescript: "ts", tsx: "ts", sh: "sh", bash: "sh", shell: "sh", json: "json", text: "text" };

/** Fenced code blocks of a document, with their markers; problems for malformed ones. */
export function extractBlocks(doc: Doc): { blocks: Block[]; problems: Problem[] } {
  const lines = doc.text.split("\n");
  const blocks: Block[] = [];
  const problems: Problem[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, lang] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const close = FENCE.exec(lines[j]);
      if (close && close[2].startsWith(fence[0]) && close[2].length >= fence.length && !close[3]) break;
      body.push(lines[j].startsWith(indent) ? lines[j].slice(indent.length) : lines[j].trimStart());
    }
    if (j >= lines.length) problems.push({ doc: doc.path, line: i + 1, message: "code block is never closed" });
    let k = i - 1;
    while (k >= 0 && lines[k].trim() === "") k--;
    const marker = k >= 0 ? MARKER.exec(lines[k]) : null;
    const block: Block = { doc: doc.path, line: i + 1, lang: lang.toLowerCase(), code: body.join("\n") };
    if (marker) {
      const m = /^skip:\s*(.+)$/.exec(marker[1]);
      if (m) block.skip = m[1];
      else problems.push({ doc: doc.path, line: k + 1, message: `unknown docs-test marker "${marker[1]}": the only one is <!-- docs-test: skip: <reason> -->` });
    }
    const named = /^\s*(?:\/\/|#)\s*([\w.-]+\.(?:ts|tsx|mts|json))\b/.exec(body[0] ?? "");
    if (named) block.file = named[1];
    if (!block.lang) problems.push({ doc: doc.path, line: i + 1, message: "code block without a language: name it (ts, sh, json, or text for output and diagrams)" });
    else if (!CHECKED_LANGS[block.lang] && !block.skip) problems.push({ doc: doc.path, line: i + 1, message: `code block in ${block.lang}, which nothing checks: use ts, sh, json or text, or mark it <!-- docs-test: skip: <reason> -->` });
    blocks.push(block);
    i = j;
  }
  return { blocks, problems };
}

/** The prose of a document: fenced blocks and HTML comments blanked (line numbers kept). */
export function proseOf(text: string): string {
  const lines = text.split("\n");
  let fence: string | undefined;
  const out = lines.map((line) => {
    const f = FENCE.exec(line);
    if (f && (!fence || (f[2].startsWith(fence[0]) && !f[3]))) {
      fence = fence ? undefined : f[2];
      return "";
    }
    return fence ? "" : line;
  });
  return out.join("\n").replace(/<!--[\s\S]*?-->/g, (c) => c.replace(/[^\n]/g, " "));
}

const lineOf = (text: string, index: number) => text.slice(0, index).split("\n").length;

/** Inline code spans of the prose, with their lines. */
export function inlineCode(doc: Doc): Array<{ code: string; line: number }> {
  const prose = proseOf(doc.text);
  // A span may wrap onto the next line of its paragraph, never across a blank line.
  return [...prose.matchAll(/`((?:[^`\n]|\n(?![ \t]*\n))+)`/g)].map((m) => ({ code: m[1].replace(/[ \t]*\n[ \t]*/g, " "), line: lineOf(prose, m.index!) }));
}

/** GitHub's anchor of a heading. */
export function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/<[^>]+>/g, "")
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/ /g, "-");
}

/** Anchors of a markdown text (headings, numbered like GitHub for repeats). */
export function anchorsOf(text: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const m of proseOf(text).matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const base = slug(m[1]);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

/** Relative links whose file or anchor does not exist. */
export function checkLinks(doc: Doc, root = REPO): Problem[] {
  const problems: Problem[] = [];
  const prose = proseOf(doc.text);
  for (const m of prose.matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
    const target = m[1];
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
    const line = lineOf(prose, m.index!);
    const [file, anchor] = target.split("#", 2);
    const path = file ? resolve(root, dirname(doc.path), file) : resolve(root, doc.path);
    if (!existsSync(path)) {
      problems.push({ doc: doc.path, line, message: `link to ${target}: ${relative(root, path)} does not exist` });
      continue;
    }
    if (anchor !== undefined && path.endsWith(".md") && !anchorsOf(readFileSync(path, "utf8")).has(anchor)) {
      problems.push({ doc: doc.path, line, message: `link to ${target}: ${relative(root, path)} has no heading #${anchor}` });
    }
  }
  return problems;
}

// ---------------------------------------------------------------- shell

/** Splits a shell line into words (quotes, backslashes), commands at && ; | and drops the trailing comment. */
export function shellCommands(line: string): { commands: string[][]; comment: string } {
  const commands: string[][] = [[]];
  let word: string | undefined;
  let quote: "'" | '"' | undefined;
  let comment = "";
  const push = () => {
    if (word !== undefined) commands[commands.length - 1].push(word);
    word = undefined;
  };
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = undefined;
      else if (c === "\\" && quote === '"' && i + 1 < line.length) word += line[++i];
      else word += c;
      continue;
    }
    if (c === "'" || c === '"') {
      quote = c;
      word ??= "";
    } else if (c === "\\" && i + 1 < line.length) {
      word = (word ?? "") + line[++i];
    } else if (c === "#" && word === undefined) {
      comment = line.slice(i + 1).trim();
      break;
    } else if (/\s/.test(c)) push();
    else if (c === "&" && line[i + 1] === "&") {
      push();
      commands.push([]);
      i++;
    } else if (c === ";" || c === "|") {
      push();
      commands.push([]);
    } else word = (word ?? "") + c;
  }
  push();
  return { commands: commands.filter((c) => c.length > 0), comment };
}

/** Lines of a shell block with `\` continuations joined, with their 0-based offsets. */
export function shellLines(code: string): Array<{ text: string; offset: number }> {
  const out: Array<{ text: string; offset: number }> = [];
  const lines = code.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let text = lines[i];
    while (/\\\s*$/.test(text) && i + 1 < lines.length) text = text.replace(/\\\s*$/, " ") + lines[++i].trim();
    if (text.trim()) out.push({ text, offset: start });
  }
  return out;
}

export interface Curl {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
}

/** The request a curl command makes (the options the docs use); throws on others. */
export function parseCurl(words: string[]): Curl {
  const headers: Record<string, string> = {};
  let method: string | undefined;
  let url: string | undefined;
  let body: string | undefined;
  for (let i = 1; i < words.length; i++) {
    const w = words[i];
    if (w === "-X" || w === "--request") method = words[++i];
    else if (w === "-H" || w === "--header") {
      const h = words[++i];
      const at = h.indexOf(":");
      headers[h.slice(0, at).trim().toLowerCase()] = h.slice(at + 1).trim();
    } else if (w === "-d" || w === "--data" || w === "--data-raw" || w === "--json") body = words[++i];
    else if (["-s", "-S", "-sS", "-i", "-N", "-f", "--silent", "--no-buffer", "--fail"].includes(w)) continue;
    else if (w.startsWith("-")) throw new Error(`curl option ${w} is not understood by the docs test`);
    else url = w;
  }
  if (!url) throw new Error("curl without a URL");
  if (!/^[a-z]+:\/\//.test(url)) url = `http://${url}`;
  return { method: method ?? (body !== undefined ? "POST" : "GET"), url, headers, body };
}

/** True for the local app address the docs use (`localhost:8787`, `127.0.0.1:8787`). */
export function isLocalApp(url: string): boolean {
  return /^http:\/\/(localhost|127\.0\.0\.1):8787(\/|$)/.test(url);
}

/** A route table: "METHOD /path/:param" entries. */
export type Routes = Set<string>;

/** True when `method path` matches a route (`:param` segments match any one segment). */
export function matchesRoute(routes: Routes, method: string, path: string): boolean {
  const segments = path.split("?")[0].replace(/\/+$/, "").split("/");
  for (const r of routes) {
    const [m, p] = r.split(" ");
    if (m !== method) continue;
    const rs = p.replace(/\/+$/, "").split("/");
    if (rs.length === segments.length && rs.every((s, i) => s.startsWith(":") || s === segments[i])) return true;
  }
  return false;
}

// ---------------------------------------------------------------- facts the checks compare with

export interface Facts {
  /** Variables of the zod schemas, by schema name. */
  schemas: Record<string, z.ZodObject<z.ZodRawShape>>;
  /** Variables the code reads outside the schemas (process.env.X, env.X), with a file that reads each. */
  codeReads: Map<string, string>;
  /** Settings keys defined by the docs' own example apps (`NAME: z.` in their TypeScript blocks). */
  exampleVars: Set<string>;
  /** Names that are not ours but appear in the docs, with why. */
  external: Record<string, string>;
  scripts: Set<string>;
  bins: Set<string>;
  /** Flags of the edgepipe CLI (`--pipeline`, ...) and its commands. */
  cliFlags: Set<string>;
  cliCommands: Set<string>;
  /** File names of TypeScript blocks, per document. */
  blockFiles: Map<string, Set<string>>;
  /** Identifiers that occur in the source (for names that are not variables). */
  sourceText: string;
  /** Path prefixes of generated, git-ignored files (may be absent in a fresh clone). */
  generated: string[];
  root: string;
}

const SOURCE_DIRS = ["functions", "worker-host", "bench", "lua", "web/src", "tests"];

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    if (name === "node_modules" || name === "artifacts") return [];
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

/** Everything the checks compare the docs with, read from the repository. */
export function gatherFacts(root: string, schemas: Facts["schemas"], blocks: Block[], external: Record<string, string>): Facts {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: Record<string, string>; bin: Record<string, string> };
  const sources = SOURCE_DIRS.flatMap((d) => filesUnder(join(root, d))).filter((f) => /\.(ts|tsx|lua|mts)$/.test(f) && !f.endsWith("docs.test.ts") && !f.endsWith("docs-check.ts") && !f.endsWith("docs-fixtures.ts"));
  const codeReads = new Map<string, string>();
  let sourceText = "";
  for (const f of sources) {
    const text = readFileSync(f, "utf8");
    sourceText += text + "\n";
    for (const m of text.matchAll(/\b(?:process\.)?env\??\.([A-Z][A-Z0-9_]*)\b/g)) if (!codeReads.has(m[1])) codeReads.set(m[1], relative(root, f));
  }
  codeReads.delete("PATH");
  const exampleVars = new Set<string>();
  const blockFiles = new Map<string, Set<string>>();
  for (const b of blocks) {
    if (CHECKED_LANGS[b.lang] !== "ts") continue;
    for (const m of b.code.matchAll(/\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+):\s*z\./g)) exampleVars.add(m[1]);
    if (b.file) blockFiles.set(b.doc, (blockFiles.get(b.doc) ?? new Set()).add(b.file));
  }
  const cli = readFileSync(join(root, "worker-host", "cli.ts"), "utf8");
  const cliFlags = new Set([...cli.matchAll(/^\s+([a-z][a-z-]*): \{ type: "(?:string|boolean)"/gm)].map((m) => `--${m[1]}`));
  const commandList = /\[((?:"[a-z]+",?\s*)+)\]\.includes\(command\)/.exec(cli)?.[1] ?? "";
  const cliCommands = new Set([...commandList.matchAll(/"([a-z]+)"/g)].map((m) => m[1]));
  const bins = new Set([...readdirSync(join(root, "node_modules", ".bin")), ...Object.keys(pkg.bin ?? {})]);
  const generated = readFileSync(join(root, ".gitignore"), "utf8").split("\n").map((l) => l.trim().replace(/^\//, "").replace(/\*.*$/, "")).filter(Boolean);
  return { schemas, codeReads, exampleVars, external, scripts: new Set(Object.keys(pkg.scripts)), bins, cliFlags, cliCommands, blockFiles, sourceText, generated, root };
}

/** Every variable name the docs may set: schema keys, what the code reads, the examples' own settings. */
function knownVariable(facts: Facts, name: string): boolean {
  return Object.values(facts.schemas).some((s) => name in s.shape) || facts.codeReads.has(name) || facts.exampleVars.has(name);
}

/** The schema that owns a variable, to validate a value the docs give it. */
function schemaOf(facts: Facts, name: string): z.ZodType | undefined {
  for (const s of Object.values(facts.schemas)) if (name in s.shape) return s.shape[name] as z.ZodType;
  return undefined;
}

const UPPER_SNAKE = /^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$/;

function checkAssignment(facts: Facts, name: string, value: string, where: Omit<Problem, "message">): Problem[] {
  if (!knownVariable(facts, name)) return [{ ...where, message: `sets ${name}, which no schema or code reads (worker-host/config.ts, functions/config.ts, functions/news/config.ts)` }];
  const schema = schemaOf(facts, name);
  if (schema && value !== "" && !/[<$]/.test(value)) {
    const parsed = schema.safeParse(value);
    if (!parsed.success) return [{ ...where, message: `${name}=${value} is rejected by its schema: ${parsed.error.issues[0]?.message}` }];
  }
  return [];
}

/** A word that names a file of this repository (or a block of the same doc), checked to exist. */
function checkPath(facts: Facts, doc: string, word: string, where: Omit<Problem, "message">): Problem[] {
  const clean = word.replace(/[),.:;]+$/, "").replace(/^\.\//, "");
  const top = clean.split("/")[0];
  if (!clean.includes("/")) {
    const isBlock = [...facts.blockFiles.values()].some((files) => files.has(clean));
    if (/^[\w-]+\.(ts|tsx)$/.test(clean) && word.startsWith("./") && !isBlock && !existsSync(join(facts.root, clean))) {
      return [{ ...where, message: `${word}: no file of that name in this repository nor a code block of the docs named // ${clean}` }];
    }
    return [];
  }
  if (!["functions", "worker-host", "lua", "web", "tests", "bench", "docs", ".ci"].includes(top)) return [];
  if (facts.generated.some((g) => clean === g.replace(/\/$/, "") || clean.startsWith(g.endsWith("/") ? g : `${g}/`))) return [];
  if (/[*<{]/.test(clean)) {
    const re = new RegExp(`^${clean.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join("[^/]*")}$`);
    const dir = join(facts.root, dirname(clean.split("*")[0] + "x"));
    const found = existsSync(dir) && readdirSync(dir).some((f) => re.test(relative(facts.root, join(dir, f))));
    return found ? [] : [{ ...where, message: `${word}: no file matches` }];
  }
  return existsSync(join(facts.root, clean)) ? [] : [{ ...where, message: `${word}: no such file in this repository` }];
}

/** Static checks of one shell command line (from a block or an inline span). */
export function checkShellLine(facts: Facts, doc: string, text: string, line: number): Problem[] {
  const where = { doc, line };
  const problems: Problem[] = [];
  const { commands } = shellCommands(text);
  for (const words of commands) {
    let w = words[0] === "export" ? words.slice(1) : words;
    while (w.length > 0 && /^[A-Za-z_][A-Za-z0-9_]*=/.test(w[0])) {
      const at = w[0].indexOf("=");
      problems.push(...checkAssignment(facts, w[0].slice(0, at), w[0].slice(at + 1), where));
      w = w.slice(1);
    }
    for (const word of w) {
      for (const m of word.matchAll(/\$\{?([A-Z][A-Z0-9_]*)\}?/g)) if (!knownVariable(facts, m[1])) problems.push({ ...where, message: `uses $${m[1]}, which no schema or code reads` });
      problems.push(...checkPath(facts, doc, word, where));
    }
    const [cmd, sub, ...rest] = w;
    if (cmd === "npm") {
      const script = sub === "run" ? rest[0] : sub === "start" || sub === "test" ? sub : undefined;
      if (script !== undefined && !script.includes("<") && !facts.scripts.has(script)) problems.push({ ...where, message: `npm script "${script}" does not exist in package.json` });
      if (script === "start" || script === "dev" || script === "reset") {
        const dashdash = w.indexOf("--");
        if (dashdash >= 0) problems.push(...checkCliArgs(facts, w.slice(dashdash + 1), where));
      }
    } else if (cmd === "npx") {
      const bin = sub?.startsWith("-") ? rest[0] : sub;
      if (bin && !bin.includes("<") && !facts.bins.has(bin)) problems.push({ ...where, message: `npx ${bin}: no such bin in node_modules/.bin or package.json` });
      if (bin === "edgepipe") {
        if (!facts.cliCommands.has(rest[0])) problems.push({ ...where, message: `edgepipe ${rest[0]}: not a command of worker-host/cli.ts (${[...facts.cliCommands].join(", ")})` });
        problems.push(...checkCliArgs(facts, rest.slice(1), where));
      }
    } else if (cmd === "curl") {
      try {
        const req = parseCurl(w);
        if (req.body !== undefined && /^[[{]/.test(req.body.trim())) {
          try {
            JSON.parse(req.body);
          } catch (err) {
            problems.push({ ...where, message: `curl body is not valid JSON: ${(err as Error).message}` });
          }
        }
      } catch (err) {
        problems.push({ ...where, message: (err as Error).message });
      }
    }
  }
  return problems;
}

function checkCliArgs(facts: Facts, args: string[], where: Omit<Problem, "message">): Problem[] {
  return args.filter((a) => a.startsWith("--")).filter((a) => !facts.cliFlags.has(a.split("=")[0])).map((a) => ({ ...where, message: `${a} is not a flag of the edgepipe CLI (${[...facts.cliFlags].join(", ")})` }));
}

/** Static checks of a document: blocks (shell, JSON), prose inline code, links. */
export function checkDocStatic(facts: Facts, doc: Doc, blocks: Block[]): Problem[] {
  const problems: Problem[] = [...checkLinks(doc, facts.root)];
  for (const b of blocks) {
    if (b.skip) {
      if (b.skip.trim().length < 8) problems.push({ doc: b.doc, line: b.line, message: "a skipped block needs a reason" });
      continue;
    }
    const kind = CHECKED_LANGS[b.lang];
    if (kind === "sh") {
      for (const l of shellLines(b.code)) problems.push(...checkShellLine(facts, b.doc, l.text, b.line + 1 + l.offset));
    } else if (kind === "json") {
      try {
        JSON.parse(b.code);
      } catch (err) {
        problems.push({ doc: b.doc, line: b.line, message: `JSON block does not parse: ${(err as Error).message}` });
      }
    }
  }
  for (const { code, line } of inlineCode(doc)) {
    const where = { doc: doc.path, line };
    if (/^(npm|npx|curl) /.test(code) || /^[A-Z][A-Z0-9_]*=\S*(\s|$)/.test(code)) {
      problems.push(...checkShellLine(facts, doc.path, code, line));
      continue;
    }
    for (const m of code.matchAll(/\$\{?([A-Z][A-Z0-9_]*)\}?/g)) if (!knownVariable(facts, m[1])) problems.push({ ...where, message: `uses $${m[1]}, which no schema or code reads` });
    const wildcard = /^([A-Z][A-Z0-9_]*_)\*$/.exec(code);
    if (wildcard) {
      const all = [...Object.values(facts.schemas).flatMap((s) => Object.keys(s.shape)), ...facts.codeReads.keys()];
      if (!all.some((n) => n.startsWith(wildcard[1]))) problems.push({ ...where, message: `${code}: no variable starts with ${wildcard[1]}` });
    } else if (UPPER_SNAKE.test(code) && !knownVariable(facts, code) && !(code in facts.external) && !new RegExp(`\\b${code}\\b`).test(facts.sourceText)) {
      problems.push({ ...where, message: `${code}: not a variable any schema or code reads, nor a name in the source (list it in the test's EXTERNAL_NAMES if it is another project's)` });
    } else if (/^(functions|worker-host|lua|web|tests|bench|docs|\.ci)\//.test(code) && !/\s/.test(code)) {
      problems.push(...checkPath(facts, doc.path, code, where));
    }
  }
  return problems;
}

// ---------------------------------------------------------------- reference tables

/** Rows of the markdown tables under each `## ` heading: heading -> rows of cells. */
export function tablesBySection(text: string): Map<string, Array<{ cells: string[]; line: number }>> {
  const out = new Map<string, Array<{ cells: string[]; line: number }>>();
  let section = "";
  const lines = proseOf(text).split("\n");
  lines.forEach((l, i) => {
    const h = /^##\s+(.+)$/.exec(l);
    if (h) section = h[1].trim();
    if (!/^\|/.test(l) || /^\|[\s|:-]+\|\s*$/.test(l)) return;
    const cells = l.replace(/^\||\|\s*$/g, "").split(/(?<!\\)\|/).map((c) => c.trim());
    const rows = out.get(section) ?? [];
    rows.push({ cells, line: i + 1 });
    out.set(section, rows);
  });
  return out;
}

/** Backticked names in a table cell (`A`, `B` -> [A, B]). */
const namesIn = (cell: string) => [...cell.matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((m) => m[1]);

/** The default a schema field takes when unset, as the docs write it. */
function defaultText(field: z.ZodType): string | undefined {
  const parsed = field.safeParse(undefined);
  if (!parsed.success || parsed.data === undefined) return undefined;
  if (typeof parsed.data === "boolean") return parsed.data ? "on" : "off";
  return String(parsed.data);
}

/**
 * docs/configuration.md: each schema's section lists exactly its variables
 * with their defaults; every variable the code reads outside the schemas is
 * in some table, and every table name is read by some code.
 */
export function checkConfigDoc(facts: Facts, doc: Doc, sections: Record<string, string>): Problem[] {
  const problems: Problem[] = [];
  const tables = tablesBySection(doc.text);
  const documented = new Set<string>();
  for (const [section, rows] of tables) {
    const schemaName = Object.entries(sections).find(([heading]) => heading === section)?.[1];
    const schema = schemaName ? facts.schemas[schemaName] : undefined;
    const listed = new Set<string>();
    for (const { cells, line } of rows.slice(1)) {
      for (const name of namesIn(cells[0])) {
        documented.add(name);
        listed.add(name);
        if (schema) {
          if (!(name in schema.shape)) {
            problems.push({ doc: doc.path, line, message: `${name} is listed under "${section}" but ${schemaName} has no such variable` });
            continue;
          }
          const want = defaultText(schema.shape[name] as z.ZodType);
          const cell = cells[1] ?? "";
          if (want === undefined ? !/^\(|^$/.test(cell) : !cell.includes(`\`${want}\``)) {
            problems.push({ doc: doc.path, line, message: `${name}: default cell "${cell}" but ${schemaName} says ${want === undefined ? "unset (write (unset...))" : `\`${want}\``}` });
          }
        } else if (!knownVariable(facts, name) || (!facts.codeReads.has(name) && !Object.values(facts.schemas).some((s) => name in s.shape))) {
          problems.push({ doc: doc.path, line, message: `${name} is listed under "${section}" but no code reads it` });
        }
      }
    }
    if (schema) {
      for (const name of Object.keys(schema.shape)) {
        if (!listed.has(name)) problems.push({ doc: doc.path, line: rows[0]?.line ?? 1, message: `${schemaName} has ${name}, which the "${section}" table does not list` });
      }
    }
  }
  for (const [section, schemaName] of Object.entries(sections)) {
    if (!tables.has(section)) problems.push({ doc: doc.path, line: 1, message: `no "## ${section}" table for ${schemaName}` });
  }
  for (const [name, file] of facts.codeReads) {
    if (!documented.has(name)) problems.push({ doc: doc.path, line: 1, message: `${file} reads ${name}, which no table lists` });
  }
  return problems;
}

/** docs/api.md: the routes in its tables are exactly `routes`. */
export function checkApiDoc(doc: Doc, routes: Routes): Problem[] {
  const problems: Problem[] = [];
  const listed = new Set<string>();
  for (const rows of tablesBySection(doc.text).values()) {
    for (const { cells, line } of rows) {
      const m = /^`(GET|POST|PUT|PATCH|DELETE) (\/\S*)`$/.exec(cells[0]);
      if (!m) continue;
      const route = `${m[1]} ${m[2]}`;
      listed.add(route);
      if (!routes.has(route)) problems.push({ doc: doc.path, line, message: `${route} is documented but the app has no such route` });
    }
  }
  for (const r of routes) if (!listed.has(r)) problems.push({ doc: doc.path, line: 1, message: `the app has ${r}, which no table lists` });
  return problems;
}

// ---------------------------------------------------------------- TypeScript blocks

/** Where a TypeScript block is written: one directory per document, its own file name or block-<line>.ts. */
export function blockPath(outDir: string, block: Block): string {
  const dir = block.doc.replace(/\.md$/, "").replace(/[^\w.-]+/g, "_");
  return join(outDir, dir, block.file ?? `block-${block.line}.ts`);
}

/** Writes the checked TypeScript blocks (those not skipped) under `outDir`, emptied first; returns each block with its path. */
export function writeTsBlocks(blocks: Block[], outDir: string, facts: Facts): Array<{ block: Block; path: string }> {
  rmSync(outDir, { recursive: true, force: true });
  return blocks
    .filter((b) => CHECKED_LANGS[b.lang] === "ts" && !b.skip)
    .map((block) => {
      const path = blockPath(outDir, block);
      mkdirSync(join(path, ".."), { recursive: true });
      writeFileSync(path, blockSource(block, outDir, facts.blockFiles.get(block.doc)));
      return { block, path };
    });
}

/**
 * The block's source as written to disk: a relative import that names no
 * block of the same document is a path from the repository root (as the docs
 * write them, e.g. `./worker-host/cluster-launcher`).
 */
export function blockSource(block: Block, outDir: string, files: Set<string> | undefined, root = REPO): string {
  const from = dirname(blockPath(outDir, block));
  return block.code.replace(/(from\s+|import\s*\(\s*)(["'])(\.\.?\/[^"']+)\2/g, (all, head: string, q: string, spec: string) => {
    const base = spec.replace(/^\.\//, "");
    if (!base.includes("/") && (files?.has(`${base}.ts`) || files?.has(base))) return all;
    let rel = relative(from, join(root, spec));
    if (!rel.startsWith(".")) rel = `./${rel}`;
    return `${head}${q}${rel}${q}`;
  });
}

/**
 * Type-checks the written blocks against the repository's tsconfig (its
 * `paths` map `edgepipe`, `edgepipe/host`, `edgepipe/news` to the sources), one
 * program for all; reports only the blocks' own diagnostics, at doc lines.
 */
export async function typeCheckBlocks(written: Array<{ block: Block; path: string }>, root = REPO): Promise<Problem[]> {
  const ts = (await import("typescript")).default;
  const configPath = join(root, "tsconfig.json");
  const config = ts.readConfigFile(configPath, ts.sys.readFile);
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, root, undefined, configPath);
  const program = ts.createProgram({ rootNames: written.map((w) => w.path), options: { ...parsed.options, noEmit: true } });
  const problems: Problem[] = [];
  for (const { block, path } of written) {
    const source = program.getSourceFile(path);
    if (!source) {
      problems.push({ doc: block.doc, line: block.line, message: `TypeScript block was not compiled (${path})` });
      continue;
    }
    for (const d of [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)]) {
      const at = d.start !== undefined ? source.getLineAndCharacterOfPosition(d.start).line : 0;
      problems.push({ doc: block.doc, line: block.line + 1 + at, message: `TS${d.code}: ${ts.flattenDiagnosticMessageText(d.messageText, " ")}` });
    }
  }
  return problems;
}
