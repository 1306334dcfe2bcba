/**
 * The RSS/Atom ingest tool: fetches feed documents through the tool cache
 * (rate-limited per tool, so a feed host is not hammered) and parses RSS 2.0,
 * RSS 1.0 (RDF) and Atom with fast-xml-parser into article inputs.
 */
import { XMLParser } from "fast-xml-parser";
import type { Keys } from "../keys";
import type { RedisClient } from "../redis";
import { cachedTool } from "./cache";
import { takeToken, type RateLimit } from "./rate-limit";

/** One article as POST /v1/articles accepts it. */
export interface FeedArticle {
  title: string;
  body: string;
  url?: string;
  source?: string;
  publishedAt?: string;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  textNodeName: "#text",
  // Entities are decoded later by normalizeText, which handles the broken ones feeds carry too.
  processEntities: true,
  htmlEntities: true,
  trimValues: true,
  isArray: (name) => name === "item" || name === "entry" || name === "link",
});

const asArray = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

function text(node: unknown): string {
  if (node === undefined || node === null) return "";
  if (typeof node === "string" || typeof node === "number") return String(node);
  if (typeof node === "object" && "#text" in (node as Record<string, unknown>)) return String((node as Record<string, unknown>)["#text"]);
  return "";
}

function isoDate(value: string): string | undefined {
  if (!value) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : new Date(ms).toISOString();
}

function atomLink(links: unknown): string | undefined {
  const list = asArray(links as Array<Record<string, unknown> | string>);
  const alternate = list.find((l) => typeof l === "object" && (l["@rel"] === undefined || l["@rel"] === "alternate"));
  const any = alternate ?? list[0];
  if (typeof any === "string") return any;
  return typeof any?.["@href"] === "string" ? (any["@href"] as string) : undefined;
}

/**
 * Parses an RSS 2.0, RSS 1.0 or Atom document. Items without a title are
 * dropped. Throws when the document is none of these.
 */
export function parseFeed(xml: string, { source }: { source?: string } = {}): FeedArticle[] {
  const doc = parser.parse(xml) as Record<string, any>;
  const out: FeedArticle[] = [];
  const push = (a: FeedArticle) => {
    if (a.title.trim()) out.push(a);
  };
  if (doc.rss?.channel) {
    const channel = Array.isArray(doc.rss.channel) ? doc.rss.channel[0] : doc.rss.channel;
    const feedTitle = source ?? (text(channel.title) || undefined);
    for (const item of asArray(channel.item) as Array<Record<string, any>>) {
      const link = text(asArray(item.link)[0]) || (item.guid && String(item.guid["@isPermaLink"]) !== "false" ? text(item.guid) : "");
      push({
        title: text(item.title),
        body: text(item["content:encoded"]) || text(item.description),
        ...(link ? { url: link } : {}),
        ...(feedTitle ? { source: feedTitle } : {}),
        ...(isoDate(text(item.pubDate) || text(item["dc:date"])) ? { publishedAt: isoDate(text(item.pubDate) || text(item["dc:date"])) } : {}),
      });
    }
    return out;
  }
  if (doc.feed) {
    const feedTitle = source ?? (text(doc.feed.title) || undefined);
    for (const entry of asArray(doc.feed.entry) as Array<Record<string, any>>) {
      const url = atomLink(entry.link);
      const published = isoDate(text(entry.published) || text(entry.updated));
      push({
        title: text(entry.title),
        body: text(entry.summary) || text(entry.content),
        ...(url ? { url } : {}),
        ...(feedTitle ? { source: feedTitle } : {}),
        ...(published ? { publishedAt: published } : {}),
      });
    }
    return out;
  }
  const rdf = doc["rdf:RDF"];
  if (rdf) {
    const feedTitle = source ?? (text(rdf.channel?.title) || undefined);
    for (const item of asArray(rdf.item) as Array<Record<string, any>>) {
      const link = text(asArray(item.link)[0]);
      const published = isoDate(text(item["dc:date"]));
      push({
        title: text(item.title),
        body: text(item.description),
        ...(link ? { url: link } : {}),
        ...(feedTitle ? { source: feedTitle } : {}),
        ...(published ? { publishedAt: published } : {}),
      });
    }
    return out;
  }
  throw new Error("not an RSS or Atom document");
}

export interface FetchFeedOptions {
  ttlSeconds: number;
  rate: RateLimit;
  /** Injected fetch (tests); defaults to the global one. */
  fetchImpl?: typeof fetch;
  timeoutMs?: number;
}

/** Fetches and parses one feed through the tool cache ("rss"), rate-limited per tool. */
export async function fetchFeed(redis: RedisClient, keys: Keys, url: string, { ttlSeconds, rate, fetchImpl = fetch, timeoutMs = 10_000 }: FetchFeedOptions): Promise<{ articles: FeedArticle[]; hit: boolean }> {
  const { value, hit } = await cachedTool(redis, keys, {
    tool: "rss",
    args: { url },
    ttlSeconds,
    negativeTtlSeconds: 30,
    lockMs: timeoutMs + 2000,
    fn: async () => {
      await takeToken(redis, keys, "rss", rate, { maxWaitMs: timeoutMs });
      const res = await fetchImpl(url, {
        headers: { accept: "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5", "user-agent": "edgepipe-news/0.1" },
        signal: AbortSignal.timeout(timeoutMs),
      });
      if (!res.ok) throw new Error(`GET ${url} answered ${res.status}`);
      return parseFeed(await res.text());
    },
  });
  return { articles: value, hit };
}
