/**
 * Text normalization for incoming news items: entity decoding (including the
 * broken forms found in real feeds such as AG News), tag stripping, canonical
 * URLs and a content hash for duplicate detection. Web APIs only.
 */
import { sha256HexSync } from "../tools/sha256";

const NAMED_ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
  nbsp: " ",
  ndash: "\u2013",
  mdash: "\u2014",
  lsquo: "\u2018",
  rsquo: "\u2019",
  ldquo: "\u201c",
  rdquo: "\u201d",
  hellip: "\u2026",
  copy: "\u00a9",
  reg: "\u00ae",
  trade: "\u2122",
  euro: "\u20ac",
  pound: "\u00a3",
  yen: "\u00a5",
  cent: "\u00a2",
  deg: "\u00b0",
  middot: "\u00b7",
  bull: "\u2022",
  laquo: "\u00ab",
  raquo: "\u00bb",
  eacute: "\u00e9",
  egrave: "\u00e8",
  aacute: "\u00e1",
  iacute: "\u00ed",
  oacute: "\u00f3",
  uacute: "\u00fa",
  ntilde: "\u00f1",
  uuml: "\u00fc",
  ouml: "\u00f6",
  auml: "\u00e4",
  ccedil: "\u00e7",
  szlig: "\u00df",
};

/**
 * Numeric references 128-159 are C1 controls in Unicode, but feeds produced
 * from Windows-1252 text use them for smart quotes and dashes (`#146;` = ’).
 */
const CP1252: Record<number, string> = {
  128: "\u20ac", 130: "\u201a", 131: "\u0192", 132: "\u201e", 133: "\u2026", 134: "\u2020", 135: "\u2021",
  136: "\u02c6", 137: "\u2030", 138: "\u0160", 139: "\u2039", 140: "\u0152", 142: "\u017d", 145: "\u2018",
  146: "\u2019", 147: "\u201c", 148: "\u201d", 149: "\u2022", 150: "\u2013", 151: "\u2014", 152: "\u02dc",
  153: "\u2122", 154: "\u0161", 155: "\u203a", 156: "\u0153", 158: "\u017e", 159: "\u0178",
};

function fromCodePoint(code: number): string | undefined {
  if (CP1252[code]) return CP1252[code];
  if (!Number.isFinite(code) || code <= 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return undefined;
  if (code < 32 && code !== 9 && code !== 10 && code !== 13) return undefined;
  return String.fromCodePoint(code);
}

function decodeNumeric(body: string): string | undefined {
  const code = body[0] === "x" || body[0] === "X" ? parseInt(body.slice(1), 16) : parseInt(body, 10);
  return fromCodePoint(code);
}

// Well-formed references: &amp; &#39; &#x24;
const ENTITY = /&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,8});/g;
// AG News replaced the "&" of each reference by a space: " #39;s", "  #36;10", " quot;".
// The space stands for the lost "&", so it is consumed with the reference.
const BARE_NUMERIC = /(?:^|\s)#([0-9]{2,7}|[xX][0-9a-fA-F]{2,6});/g;
const BARE_NAMED = /(?:^|\s)(quot|amp|lt|gt|apos|nbsp);/g;

function decodeEntitiesOnce(s: string): string {
  return s
    .replace(ENTITY, (whole, body: string) => {
      if (body[0] === "#") return decodeNumeric(body.slice(1)) ?? whole;
      // "&AMP;" and friends appear in shouting feeds; other names are case-sensitive (&Eacute;).
      const lower = body.toLowerCase();
      return NAMED_ENTITIES[body] ?? (/^(amp|lt|gt|quot|nbsp)$/.test(lower) ? NAMED_ENTITIES[lower] : whole);
    })
    .replace(BARE_NUMERIC, (whole, body: string) => {
      const decoded = decodeNumeric(body);
      return decoded === undefined ? whole : decoded;
    })
    .replace(BARE_NAMED, (_whole, name: string) => NAMED_ENTITIES[name]);
}

// Only things that look like markup: "<b>", "</A>", "<AAPL.O>", "<!-- -->"; never "a < b".
const TAG = /<!--[\s\S]*?-->|<\/?[A-Za-z][^<>]*>/g;
const BLOCK_TAG = /^<\/?(?:br|p|div|li|ul|ol|h[1-6]|tr|td|th|table|blockquote|hr)\b/i;

function stripTags(s: string): string {
  // Block-level tags separate words; inline ones (b, i, a, font) sit inside text.
  return s.replace(/<(script|style)\b[\s\S]*?<\/\1\s*>/gi, " ").replace(TAG, (tag) => (BLOCK_TAG.test(tag) ? " " : ""));
}

/**
 * Cleans one field of a news item: decodes HTML entities (also the
 * ampersand-less `#36;` / ` quot;` forms and double escaping such as
 * `&amp;lt;b&amp;gt;`), strips tags, turns backslash line breaks into spaces,
 * collapses whitespace and trims.
 *
 * @example normalizeText("the  #36;10 million\\prize") // "the $10 million prize"
 */
export function normalizeText(s: string): string {
  let text = s;
  // Each round undoes one level of escaping; three covers every feed seen so far.
  for (let round = 0; round < 3; round++) {
    // Every entity form ends in ";" and every tag starts with "<": most text has neither, skip the regex passes.
    const decoded = text.includes(";") ? decodeEntitiesOnce(text) : text;
    const next = decoded.includes("<") ? stripTags(decoded) : decoded;
    if (next === text) break;
    text = next;
  }
  // Each replace below copies the whole text, so it only runs when the text has what it removes.
  if (text.includes("\\")) {
    text = text
      .replace(/\\+(?=\$)/g, "") // "\$375 million" is an escaped dollar sign
      .replace(/\\+/g, " "); // "second\team", "text.\\Next" are line breaks
  }
  if (ZERO_WIDTH.test(text)) text = text.replace(ZERO_WIDTH_ALL, "");
  // Collapsing is a no-op when every whitespace is already a single plain space.
  if (UNCOLLAPSED_SPACE.test(text)) text = text.replace(/\s+/g, " ");
  return text.trim();
}

const ZERO_WIDTH = /[\u200b-\u200d\ufeff]/;
const ZERO_WIDTH_ALL = /[\u200b-\u200d\ufeff]/g;
/** Whitespace that `\s+` -> " " would change: two in a row, or any but a plain space. */
const UNCOLLAPSED_SPACE = /\s\s|[^\S ]/;

const TRACKING_PARAMS = new Set(["fbclid", "gclid", "dclid", "msclkid", "ref", "ref_src", "mc_cid", "mc_eid", "igshid"]);

/**
 * Canonical form of an article URL, so the same story linked twice is seen as
 * one: lowercase scheme and host, no fragment, no tracking parameters (utm_*,
 * fbclid, gclid, ref...), remaining parameters sorted, no trailing slash.
 * Returns undefined for anything that is not an absolute http(s) URL.
 */
export function canonicalUrl(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url.trim());
  } catch {
    return undefined;
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") return undefined;
  if (!parsed.hostname) return undefined;
  const params = [...parsed.searchParams.entries()]
    .filter(([name]) => !name.toLowerCase().startsWith("utm_") && !TRACKING_PARAMS.has(name.toLowerCase()))
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0));
  const query = new URLSearchParams(params).toString();
  // URL already lowercases scheme and host and drops default ports.
  const path = parsed.pathname.replace(/\/+$/, "");
  const auth = parsed.username ? `${parsed.username}${parsed.password ? `:${parsed.password}` : ""}@` : "";
  return `${parsed.protocol}//${auth}${parsed.host.toLowerCase()}${path}${query ? `?${query}` : ""}`;
}

/**
 * SHA-256 (hex) of the normalized, lowercased `title + "\n" + body`: the
 * identity of an article's content regardless of markup or spacing.
 */
export async function contentHash(title: string, body: string): Promise<string> {
  return contentHashOfNormalized(normalizeText(title), normalizeText(body));
}

/**
 * contentHash for text already passed through normalizeText (the fetcher
 * has just normalized it): the same digest without normalizing twice.
 */
export async function contentHashOfNormalized(title: string, body: string): Promise<string> {
  return sha256HexSync(`${title.toLowerCase()}\n${body.toLowerCase()}`);
}
