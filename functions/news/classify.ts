/**
 * Offline topic classifier: a weighted keyword model over a hand-written
 * lexicon (functions/news/lexicon.ts). No downloads, no learned weights, a
 * few microseconds per article, the same answer on every runtime.
 *
 * Scoring: every lexicon hit adds its weight to its topic, title hits count
 * TITLE_WEIGHT times. Topics are grouped into families (world+politics+
 * education, business+finance, technology+science+health+climate, sports,
 * entertainment): the family with the highest score wins first, then the
 * best topic inside it. Grouping first keeps a story about "Iraq" and the
 * "White House" from losing to one business word only because its evidence
 * was split between `world` and `politics`.
 */
import { normalizeText } from "./normalize";
import { LEXICON, PATTERN_CUES } from "./lexicon";

export const TOPICS = [
  "world",
  "politics",
  "business",
  "finance",
  "technology",
  "science",
  "health",
  "sports",
  "entertainment",
  "climate",
  "education",
] as const;
export type Topic = (typeof TOPICS)[number];

export interface TopicPrediction {
  topic: Topic;
  /** In [0, 1]: how much of the evidence points at the winning family, damped when evidence is thin. */
  confidence: number;
  /** Raw per-topic scores (only topics with evidence). */
  scores?: Record<string, number>;
}

/** Topic families: the coarse decision is made between these. */
export const TOPIC_FAMILIES: Record<string, readonly Topic[]> = {
  news: ["world", "politics", "education"],
  economy: ["business", "finance"],
  scitech: ["technology", "science", "health", "climate"],
  sports: ["sports"],
  culture: ["entertainment"],
};

/** A title word says more about the topic than a body word. */
const TITLE_WEIGHT = 2;
/** Used when nothing matched: "world" is the catch-all of general news. */
const FALLBACK: Topic = "world";

const T = TOPICS.length;
const topicIndex = new Map<string, number>(TOPICS.map((t, i) => [t, i]));
const familyOf: number[] = new Array(T).fill(0);
const FAMILY_NAMES = Object.keys(TOPIC_FAMILIES);
FAMILY_NAMES.forEach((family, f) => {
  for (const topic of TOPIC_FAMILIES[family]) familyOf[topicIndex.get(topic)!] = f;
});

type Weights = Float64Array; // one weight per topic

interface CompiledLexicon {
  words: Map<string, Weights>;
  prefixes: Map<string, Weights>;
  pairs: Map<string, Weights>;
  /** First words of pairs, to skip the pair lookup for most tokens. */
  pairStarts: Set<string>;
  maxPrefix: number;
}

function compile(): CompiledLexicon {
  const words = new Map<string, Weights>();
  const prefixes = new Map<string, Weights>();
  const pairs = new Map<string, Weights>();
  const pairStarts = new Set<string>();
  let maxPrefix = 0;
  const put = (map: Map<string, Weights>, term: string, topic: number, weight: number) => {
    let w = map.get(term);
    if (!w) map.set(term, (w = new Float64Array(T)));
    w[topic] = Math.max(w[topic], weight);
  };
  for (const [topic, tiers] of Object.entries(LEXICON)) {
    const t = topicIndex.get(topic);
    if (t === undefined) throw new Error(`lexicon names an unknown topic: ${topic}`);
    for (const [weightText, list] of Object.entries(tiers)) {
      const weight = Number(weightText);
      for (const term of list.split(/\s+/)) {
        if (!term) continue;
        if (term.endsWith("*")) {
          const stem = term.slice(0, -1);
          if (stem.length < 3) throw new Error(`lexicon prefix too short: ${term}`);
          put(prefixes, stem, t, weight);
          maxPrefix = Math.max(maxPrefix, stem.length);
        } else if (term.includes("_")) {
          const [first, second, ...rest] = term.split("_");
          if (rest.length > 0) throw new Error(`lexicon pairs have two words: ${term}`);
          put(pairs, `${first} ${second}`, t, weight);
          pairStarts.add(first);
        } else {
          put(words, term, t, weight);
        }
      }
    }
  }
  return { words, prefixes, pairs, pairStarts, maxPrefix };
}

let compiled: CompiledLexicon | undefined;
function lexicon(): CompiledLexicon {
  return (compiled ??= compile());
}

const DOTTED_ACRONYM = /\b(?:[A-Za-z]\.){2,}/g;
const TOKEN = /[a-z0-9]+(?:[-&.][a-z0-9]+)*(?:['\u2019][a-z]+)?/g;

/** Lowercased word tokens; dotted acronyms collapsed, possessives dropped. */
export function tokenize(text: string): string[] {
  // Most texts have no dotted acronym: skip the replace (and its copy) then.
  const collapsed = text.includes(".") ? text.replace(DOTTED_ACRONYM, (m) => m.replace(/\./g, "")) : text;
  const tokens = collapsed.toLowerCase().match(TOKEN) ?? [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    // Only tokens with an apostrophe need the two replaces (a few per article).
    if (t.includes("'") || t.includes("\u2019")) tokens[i] = t.replace(/['\u2019]s$/, "").replace(/['\u2019]/g, "");
  }
  return tokens;
}

function lookupWord(lex: CompiledLexicon, token: string): Weights | undefined {
  const exact = lex.words.get(token);
  if (exact) return exact;
  for (let len = Math.min(token.length, lex.maxPrefix); len >= 3; len--) {
    const hit = lex.prefixes.get(token.slice(0, len));
    if (hit) return hit;
  }
  return undefined;
}

// Scratch buffer of addTokens (one per module: classification is synchronous).
const best = new Float64Array(FAMILY_NAMES.length);

function addTokens(lex: CompiledLexicon, tokens: string[], factor: number, scores: Float64Array, family: Float64Array): void {
  const add = (w: Weights) => {
    // A word adds to each topic, but only once to its family (the max over the
    // family's topics), so shared vocabulary such as "virus" is not double-counted.
    best.fill(0);
    for (let t = 0; t < T; t++) {
      if (w[t] === 0) continue;
      scores[t] += w[t] * factor;
      best[familyOf[t]] = Math.max(best[familyOf[t]], w[t]);
    }
    for (let f = 0; f < best.length; f++) family[f] += best[f] * factor;
  };
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i];
    if (i + 1 < tokens.length && lex.pairStarts.has(token)) {
      const pair = lex.pairs.get(`${token} ${tokens[i + 1]}`);
      if (pair) {
        add(pair);
        i++;
        continue;
      }
    }
    let w = lookupWord(lex, token);
    if (!w && token.includes("-")) {
      for (const part of token.split("-")) {
        const partWeights = part.length > 1 ? lookupWord(lex, part) : undefined;
        if (partWeights) add(partWeights);
      }
      continue;
    }
    if (w) add(w);
  }
}

function addPatterns(text: string, factor: number, scores: Float64Array, family: Float64Array): void {
  for (const cue of PATTERN_CUES) {
    const count = text.match(cue.pattern)?.length ?? 0;
    if (count === 0) continue;
    const t = topicIndex.get(cue.topic)!;
    scores[t] += cue.weight * count * factor;
    family[familyOf[t]] += cue.weight * count * factor;
  }
}

/**
 * Assigns one of TOPICS to an article, offline. Pass `{ normalized: true }`
 * when title and body already went through normalizeText (the fetcher's
 * output): the same answer without normalizing twice.
 *
 * @example classifyTopic("Yankees beat Red Sox 5-3", "...").topic // "sports"
 */
export function classifyTopic(title: string, body: string, { normalized = false }: { normalized?: boolean } = {}): TopicPrediction {
  const lex = lexicon();
  const scores = new Float64Array(T);
  const family = new Float64Array(FAMILY_NAMES.length);
  const cleanTitle = normalized ? title : normalizeText(title);
  const cleanBody = normalized ? body : normalizeText(body);
  addTokens(lex, tokenize(cleanTitle), TITLE_WEIGHT, scores, family);
  addTokens(lex, tokenize(cleanBody), 1, scores, family);
  addPatterns(cleanTitle, TITLE_WEIGHT, scores, family);
  addPatterns(cleanBody, 1, scores, family);

  let bestFamily = -1;
  let total = 0;
  for (let f = 0; f < family.length; f++) {
    total += family[f];
    if (family[f] > 0 && (bestFamily < 0 || family[f] > family[bestFamily])) bestFamily = f;
  }
  if (bestFamily < 0) return { topic: FALLBACK, confidence: 0, scores: {} };

  let bestTopic = -1;
  for (let t = 0; t < T; t++) {
    if (familyOf[t] !== bestFamily) continue;
    if (bestTopic < 0 || scores[t] > scores[bestTopic]) bestTopic = t;
  }
  const top = family[bestFamily];
  // Share of the evidence, damped by how much evidence there is at all.
  const confidence = (top / total) * (1 - Math.exp(-top / 6));
  const scoreRecord: Record<string, number> = {};
  for (let t = 0; t < T; t++) if (scores[t] > 0) scoreRecord[TOPICS[t]] = Math.round(scores[t] * 100) / 100;
  return { topic: TOPICS[bestTopic], confidence: Math.round(confidence * 1000) / 1000, scores: scoreRecord };
}

/** The four AG News classes (label 1-4). */
export const AG_CLASSES = ["World", "Sports", "Business", "Sci/Tech"] as const;

/**
 * Maps a topic to its AG News label (1 World, 2 Sports, 3 Business, 4 Sci/Tech)
 * for evaluation. politics and education count as World (public affairs),
 * finance as Business, technology/science/health/climate as Sci/Tech (the AG
 * Sci/Tech class also carries science, health and environment news), and
 * entertainment as World, the class AG News used for general news.
 */
export function agLabelOf(topic: Topic): 1 | 2 | 3 | 4 {
  switch (topic) {
    case "sports":
      return 2;
    case "business":
    case "finance":
      return 3;
    case "technology":
    case "science":
    case "health":
    case "climate":
      return 4;
    default:
      return 1;
  }
}
