/**
 * Cheap, deterministic enrichment for articles: an extractive summary,
 * keywords and reading time. Pure string code (Workers-safe).
 */
import { normalizeText } from "./normalize";

/** Words that never end a sentence when followed by a period. */
const ABBREVIATIONS = new Set(
  (
    "mr mrs ms dr prof sr jr st mt ft rev gen col lt capt sgt cmdr adm gov sen rep pres supt " +
    "inc corp co ltd plc bros llc vs etc cf al approx dept univ assn est fig no nos vol " +
    "jan feb mar apr jun jul aug sep sept oct nov dec " +
    "ala ariz ark calif colo conn del fla ga ill ind kan ky la md mass mich minn miss mo mont " +
    "neb nev okla ore pa tenn tex va vt wash wis wyo"
  ).split(" "),
);

/**
 * Splits text into sentences at . ! ? followed by a space and a capital,
 * digit or quote, but not after abbreviations ("Mr.", "Inc.", "Calif."),
 * initials ("J. Smith") or dotted acronyms ("U.S.").
 */
export function splitSentences(text: string): string[] {
  return splitNormalizedSentences(normalizeText(text));
}

const SENTENCE_BOUNDARY = /[.!?]+["'\u201d\u2019)\]]*(?=\s+["'\u201c\u2018(\[]?[A-Z0-9])/g;

/** The word ending at `end` in `text` (letters and dots, starting with a letter), without slicing the text before it. */
function wordBefore(text: string, start: number, end: number): string {
  let i = end;
  while (i > start) {
    const c = text.charCodeAt(i - 1);
    const letter = (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
    if (!letter && c !== 46) break;
    i--;
  }
  // The word must start with a letter: skip leading dots.
  while (i < end && text.charCodeAt(i) === 46) i++;
  return text.slice(i, end);
}

/** splitSentences for text that already went through normalizeText. */
function splitNormalizedSentences(clean: string): string[] {
  if (!clean) return [];
  const sentences: string[] = [];
  let start = 0;
  const boundary = SENTENCE_BOUNDARY;
  boundary.lastIndex = 0;
  for (let m = boundary.exec(clean); m; m = boundary.exec(clean)) {
    const end = m.index + m[0].length;
    if (m[0][0] === ".") {
      const lastWord = wordBefore(clean, start, m.index);
      // Initials ("J."), dotted acronyms ("U.S.", "a.m.") and known abbreviations.
      if (lastWord.length === 1 || lastWord.includes(".") || ABBREVIATIONS.has(lastWord.toLowerCase())) continue;
    }
    const sentence = clean.slice(start, end).trim();
    if (sentence) sentences.push(sentence);
    start = end;
  }
  const rest = clean.slice(start).trim();
  if (rest) sentences.push(rest);
  return sentences;
}

const STOPWORDS = new Set(
  (
    "a about above after again against all almost along already also although always am among an and another any " +
    "anyone anything are around as at away back be became because become been before being below between both but by " +
    "can cannot could did do does doing done down during each either else enough even ever every few for from further " +
    "get gets getting given go goes going got had has have having he her here hers herself him himself his how however " +
    "i if in into is it its itself just last least less let like likely made make makes many may me might more most " +
    "much must my myself near need never new next no nor not now of off often on once one only onto or other others " +
    "our ours out over own per perhaps put rather really same say says said see seen several she should since so some " +
    "still such take than that the their theirs them themselves then there these they this those though through thus " +
    "to today together too toward towards under until up upon us use used very via want was way we well were what " +
    "when where whether which while who whom whose why will with within without would yet you your yours " +
    "monday tuesday wednesday thursday friday saturday sunday yesterday tomorrow week weeks year years month months " +
    "day days time times ago first second third two three four five six seven eight nine ten percent " +
    "reuters ap afp update quot amp told according report reported reports news mr mrs ms"
  ).split(" "),
);

const WORD = /[a-z0-9]+(?:['\u2019&.-][a-z0-9]+)*/g;
const NUMBER_ONLY = /^[\d.,-]+$/;
const POSSESSIVE = /['\u2019]s$/;

/** Content words: lowercased, no stopwords, no numbers, at least 3 characters. */
function contentWords(text: string): string[] {
  const words = text.toLowerCase().match(WORD) ?? [];
  const out: string[] = [];
  for (let w of words) {
    if (w.length > 2 && (w.charCodeAt(w.length - 1) === 115 /* s */)) w = w.replace(POSSESSIVE, "");
    if (w.length >= 3 && !STOPWORDS.has(w) && !ABBREVIATIONS.has(w) && !NUMBER_ONLY.test(w)) out.push(w);
  }
  return out;
}

function cutAtWord(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const room = maxChars - 1; // leave space for the ellipsis
  let cut = text.slice(0, room + 1);
  const lastSpace = cut.lastIndexOf(" ");
  cut = lastSpace > 0 ? cut.slice(0, lastSpace) : text.slice(0, room);
  return `${cut.replace(/[\s,;:.\-\u2013\u2014]+$/, "")}\u2026`;
}

const WIRE_CREDIT = /^(?:AP|AFP|Reuters|UPI)\s+-+\s+/;

/**
 * Extractive summary: the best `maxSentences` sentences in their original
 * order, scored by position (leads matter in news) and overlap with the
 * text's most frequent content words. Never longer than `maxChars`; a first
 * sentence that alone is too long is cut at a word boundary with "…".
 */
export function summarize(text: string, { maxSentences = 2, maxChars = 280, normalized = false }: { maxSentences?: number; maxChars?: number; normalized?: boolean } = {}): string {
  // A bare wire credit ("AP - ...") is not part of the story.
  const clean = normalized ? text : normalizeText(text);
  const sentences = splitNormalizedSentences(clean.replace(WIRE_CREDIT, ""));
  if (sentences.length === 0 || maxSentences < 1 || maxChars < 2) return "";

  // Tokens never span the space between sentences, so the words of the whole
  // text are the words of its sentences: tokenize each sentence once.
  const sentenceWords = sentences.map(contentWords);
  const frequency = new Map<string, number>();
  for (const words of sentenceWords) for (const w of words) frequency.set(w, (frequency.get(w) ?? 0) + 1);
  const overlaps = sentenceWords.map((words) => {
    let shared = 0;
    for (const w of words) shared += (frequency.get(w) ?? 1) - 1;
    return words.length ? shared / Math.sqrt(words.length) : 0;
  });
  const maxOverlap = Math.max(...overlaps) || 1;
  // Position dominates (the lead is the summary in news style); overlap with
  // the text's recurring words ranks the rest.
  const scored = sentences.map((sentence, index) => ({
    sentence,
    index,
    score: 2 / (1 + index) + overlaps[index] / maxOverlap,
  }));
  const ranked = [...scored].sort((a, b) => b.score - a.score || a.index - b.index);

  const chosen: typeof scored = [];
  let length = 0;
  for (const candidate of ranked) {
    if (chosen.length >= maxSentences) break;
    const added = candidate.sentence.length + (chosen.length ? 1 : 0);
    if (length + added > maxChars) {
      // The best sentence alone is too long: cut it rather than fall back to a minor one.
      if (chosen.length === 0) return cutAtWord(candidate.sentence, maxChars);
      continue;
    }
    chosen.push(candidate);
    length += added;
  }
  return chosen
    .sort((a, b) => a.index - b.index)
    .map((c) => c.sentence)
    .join(" ");
}

const NAME_STOPWORDS = new Set(
  "the a an in on at for and but or of to by with from as this that these those it its he she they we his her their " +
    "monday tuesday wednesday thursday friday saturday sunday january february march april may june july august " +
    "september october november december update".split(" "),
);

/** Capitalized multi-word names in running text ("Federal Mogul", "Bank of America"). */
function capitalizedNames(text: string): string[] {
  const names: string[] = [];
  // Words like "Federal", "McDonald", "O'Neill"; all-caps datelines ("NEW YORK") are not names.
  const pattern = /\b[A-Z][a-z]+(?:[A-Z][a-z]+)?(?:['\u2019][A-Z]?[a-z]+)?(?:\s+(?:of\s+|de\s+)?[A-Z][a-z]+(?:[A-Z][a-z]+)?(?:['\u2019][A-Z]?[a-z]+)?)+/g;
  for (const match of text.match(pattern) ?? []) {
    const words = match.split(/\s+/);
    while (words.length && NAME_STOPWORDS.has(words[0].toLowerCase())) words.shift();
    while (words.length && NAME_STOPWORDS.has(words[words.length - 1].toLowerCase())) words.pop();
    if (words.length >= 2 && words.length <= 4) names.push(words.join(" ").replace(/['\u2019]s$/, "").toLowerCase());
  }
  return names;
}

/** True when most words of a title start with a capital (headline case carries no name signal). */
function isHeadlineCase(title: string): boolean {
  const words = title.match(/[A-Za-z][A-Za-z'\u2019]*/g) ?? [];
  const long = words.filter((w) => w.length > 3);
  if (long.length < 2) return false;
  return long.filter((w) => /^[A-Z]/.test(w)).length / long.length > 0.6;
}

/**
 * Up to `max` keywords, lowercased: capitalized multi-word names found in the
 * text count as one keyword ("federal mogul"); other words are ranked by
 * stopword-filtered term frequency with title words counting three times.
 */
export function extractKeywords(title: string, body: string, max = 5, { normalized = false }: { normalized?: boolean } = {}): string[] {
  const cleanTitle = normalized ? title : normalizeText(title);
  const cleanBody = normalized ? body : normalizeText(body);
  const titleLower = cleanTitle.toLowerCase();
  const scores = new Map<string, { score: number; first: number }>();
  let order = 0;
  const bump = (term: string, by: number) => {
    const entry = scores.get(term);
    if (entry) entry.score += by;
    else scores.set(term, { score: by, first: order++ });
  };

  // Names: from the body, and from the title unless it is in headline case.
  const names = [...(isHeadlineCase(cleanTitle) ? [] : capitalizedNames(cleanTitle)), ...capitalizedNames(cleanBody)];
  const nameWords = new Set<string>();
  for (const name of names) {
    bump(name, 2 + (titleLower.includes(name) ? 3 : 0));
    for (const w of name.split(" ")) nameWords.add(w);
  }
  for (const w of contentWords(cleanTitle)) if (!nameWords.has(w)) bump(w, 3);
  for (const w of contentWords(cleanBody)) if (!nameWords.has(w)) bump(w, 1);

  return [...scores.entries()]
    .sort(([, a], [, b]) => b.score - a.score || a.first - b.first)
    .slice(0, Math.max(0, max))
    .map(([term]) => term);
}

/** Words of normalized text (single spaces, trimmed), counted without splitting it. */
export function countWords(clean: string): number {
  if (!clean) return 0;
  let words = 1;
  for (let i = clean.indexOf(" "); i >= 0; i = clean.indexOf(" ", i + 1)) words++;
  return words;
}

/**
 * Estimated reading time in whole minutes (rounded up, at least 1).
 * `{ normalized: true }` when the text already went through normalizeText.
 */
export function readingTimeMinutes(text: string, wpm = 200, { normalized = false }: { normalized?: boolean } = {}): number {
  const words = countWords(normalized ? text : normalizeText(text));
  const rate = wpm > 0 ? wpm : 200;
  return Math.max(1, Math.ceil(words / rate));
}
