/**
 * The built-in demo feed: plausible, made-up headlines per topic, generated
 * deterministically from a seed, so `npm start` shows a live pipeline on a
 * fresh checkout (no downloads, no ../shared data). Workers-safe.
 */
import type { Topic } from "./classify";
import type { ArticleInput } from "./schema";
import { seededRandom } from "./users";

interface TopicTemplates {
  subjects: string[];
  actions: string[];
  objects: string[];
  details: string[];
}

const T: Record<Topic, TopicTemplates> = {
  world: {
    subjects: ["UN envoy", "Foreign ministers", "Peacekeepers", "Aid agencies", "Border officials", "The prime minister"],
    actions: ["call for ceasefire in", "hold emergency talks on", "report heavy fighting near", "evacuate civilians from", "sign a treaty over"],
    objects: ["the disputed border region", "the northern provinces", "the capital", "refugee camps", "the coastal city"],
    details: ["Diplomats said the talks would resume next week.", "Thousands of people have fled the violence.", "Troops remained on high alert overnight."],
  },
  politics: {
    subjects: ["Senate leaders", "The governor", "Opposition lawmakers", "The election commission", "Campaign officials", "Parliament"],
    actions: ["unveil a plan for", "vote to block", "debate a bill on", "announce a probe into", "clash over"],
    objects: ["campaign finance reform", "the budget deal", "voting rights", "the new tax code", "redistricting"],
    details: ["The measure needs a two-thirds majority to pass.", "Polls show voters are split on the issue.", "Critics called the move a political stunt."],
  },
  business: {
    subjects: ["The retailer", "A major airline", "The carmaker", "The oil company", "A food giant", "The chipmaker's rival"],
    actions: ["reports record profit from", "cuts jobs amid", "agrees to buy", "raises prices on", "expands into"],
    objects: ["overseas markets", "a struggling competitor", "its core brands", "online sales", "new factories"],
    details: ["Shares rose in early trading after the announcement.", "The chief executive said demand remained strong.", "Analysts had expected weaker quarterly sales."],
  },
  finance: {
    subjects: ["The central bank", "Bond investors", "Wall Street", "Currency traders", "The Federal Reserve", "Major banks"],
    actions: ["weigh an interest rate hike amid", "retreat on fears of", "rally after data on", "brace for volatility from", "bet heavily on"],
    objects: ["rising inflation", "the dollar's slide", "mortgage rates", "quarterly earnings", "the stock market rebound"],
    details: ["Treasury yields climbed to their highest level in months.", "The stock index closed slightly lower on the day.", "Bond investors await the next interest rate decision."],
  },
  technology: {
    subjects: ["The software maker", "A search engine giant", "Smartphone makers", "Cloud providers", "A startup", "The chip designer"],
    actions: ["launches a new", "patches a flaw in", "faces an antitrust case over", "opens source code for", "bets on"],
    objects: ["wireless networks", "its web browser", "artificial intelligence chips", "an operating system update", "computer security tools"],
    details: ["The update rolls out to users over the coming weeks.", "Developers can download a preview today.", "The company said no customer data was exposed."],
  },
  science: {
    subjects: ["NASA scientists", "Astronomers", "Physicists", "Researchers", "A space probe", "Biologists"],
    actions: ["discover evidence of", "map", "publish a study on", "measure", "capture images of"],
    objects: ["water on a distant moon", "a new exoplanet", "dark matter", "ancient fossils", "the solar wind"],
    details: ["The findings appear in the journal this week.", "The team used data from an orbiting telescope.", "Further experiments are planned for next year."],
  },
  health: {
    subjects: ["Health officials", "Doctors", "The drug maker", "Hospitals", "Researchers", "The health ministry"],
    actions: ["warn of a rise in", "approve a vaccine for", "study a new treatment for", "report a shortage of", "launch a campaign against"],
    objects: ["flu cases", "childhood obesity", "heart disease", "cancer patients", "antibiotic resistance"],
    details: ["Patients are urged to consult their doctors.", "The trial enrolled more than a thousand volunteers.", "Clinics expect a busy winter season."],
  },
  sports: {
    subjects: ["The defending champions", "The home team", "The star striker", "The coach", "The Olympic squad", "The rookie quarterback"],
    actions: ["win the final against", "suffer a late defeat to", "sign a deal with", "clinch the title over", "rally past"],
    objects: ["their league rivals", "the visiting side", "a top club", "the reigning champions", "the underdogs"],
    details: ["The season resumes after the international break.", "Fans celebrated long into the night.", "The match went to extra time."],
  },
  entertainment: {
    subjects: ["The film studio", "A pop star", "The director", "The streaming service", "Critics", "The band"],
    actions: ["premieres", "announces a tour for", "wins an award for", "delays the release of", "reboots"],
    objects: ["a blockbuster sequel", "the new album", "a hit television series", "the summer movie", "a festival lineup"],
    details: ["Tickets go on sale on Friday.", "The movie topped the box office this weekend.", "Fans have waited years for the release."],
  },
  climate: {
    subjects: ["Climate scientists", "Environmental groups", "The energy ministry", "Coastal cities", "Negotiators", "Farmers"],
    actions: ["warn of record", "push for cuts in", "prepare for", "invest in", "report damage from"],
    objects: ["carbon emissions", "rising sea levels", "heat waves", "renewable energy", "melting glaciers"],
    details: ["Climate scientists say global temperatures have set new records.", "The climate summit aims for a binding deal on emissions.", "Drought linked to climate change has hit harvests."],
  },
  education: {
    subjects: ["Teachers", "The university", "School boards", "Students", "The education department", "Parents"],
    actions: ["protest cuts to", "expand access to", "revise rules on", "rally for", "report gains in"],
    objects: ["school funding", "student loans", "reading scores", "college admissions", "online classes"],
    details: ["The new school term starts next month.", "University enrollment has grown for the third year.", "Officials promised to review the school curriculum for students."],
  },
};

const TOPIC_ORDER = Object.keys(T) as Topic[];
const SOURCES = ["Demo Wire", "Edge Daily", "Pipeline Post", "Valkey Times"];

export interface DemoArticle extends ArticleInput {
  /** The topic the generator wrote it for (the classifier decides on its own). */
  intendedTopic: Topic;
}

/**
 * `n` distinct demo articles, deterministic for a seed, round-robin over the
 * topics. Titles are unique within one call (up to a few thousand).
 */
export function generateDemoArticles(n: number, { seed = 1, now = Date.UTC(2026, 0, 1) }: { seed?: number; now?: number } = {}): DemoArticle[] {
  const rand = seededRandom(seed);
  const pick = <X>(list: X[]) => list[Math.floor(rand() * list.length)];
  const seen = new Set<string>();
  const out: DemoArticle[] = [];
  for (let i = 0; out.length < n && i < n * 50; i++) {
    const topic = TOPIC_ORDER[out.length % TOPIC_ORDER.length];
    const t = T[topic];
    let title = `${pick(t.subjects)} ${pick(t.actions)} ${pick(t.objects)}`;
    if (seen.has(title)) title = `${title} (${pick(SOURCES)} report ${out.length + 1})`;
    if (seen.has(title)) continue;
    seen.add(title);
    const detail1 = pick(t.details);
    let detail2 = pick(t.details);
    if (detail2 === detail1) detail2 = t.details[(t.details.indexOf(detail1) + 1) % t.details.length];
    const slug = title.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
    out.push({
      id: `demo-${seed}-${out.length + 1}`,
      title,
      body: `${title}, officials and observers said on ${new Date(now - out.length * 60_000).toUTCString().slice(0, 16)}. ${detail1} ${detail2}`,
      // The seed is in the path: a new demo session (new seed) is not a duplicate of the last one.
      url: `https://demo.edgepipe.invalid/${seed.toString(36)}/${topic}/${slug}`,
      source: pick(SOURCES),
      publishedAt: new Date(now - out.length * 60_000).toISOString(),
      intendedTopic: topic,
    });
  }
  return out;
}
