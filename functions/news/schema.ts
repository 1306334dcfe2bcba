/**
 * Schemas of the news pipeline: the article clients post, the payloads that
 * travel between its stages, users' interests, and the feed item of the
 * public API. One module, so every boundary validates with the same rules.
 */
import { z } from "zod";
import { MAX_DELAY_MS } from "../delayed";
import { FeedId } from "../keys";
import { TOPICS } from "./classify";

/** Most articles one POST /v1/articles call may carry. */
export const MAX_ARTICLES_PER_CALL = 500;

/** A topic of the fixed list. */
export const TopicName = z.enum(TOPICS);

/** One article as clients post it (POST /v1/articles) and as the fetcher receives it. */
export const ArticleInput = z.object({
  /** The client's own id (kept in the run and the stored article, never used in a key). */
  id: z.string().min(1).max(200).optional(),
  url: z.string().url().max(2048).optional(),
  title: z.string().min(1, "title must not be empty").max(1000),
  body: z.string().max(100_000),
  source: z.string().min(1).max(200).optional(),
  publishedAt: z.string().min(1).max(64).optional(),
});
export type ArticleInput = z.infer<typeof ArticleInput>;

/** Body of POST /v1/articles. */
export const IngestRequest = z
  .object({
    articles: z.array(ArticleInput).min(1, "send at least one article").max(MAX_ARTICLES_PER_CALL, `at most ${MAX_ARTICLES_PER_CALL} articles per call`),
    /** Start the runs this many ms from now (delayed runs). */
    delayMs: z.number().int().min(0).max(MAX_DELAY_MS).optional(),
    /** Start the runs at this time (ISO 8601 or epoch ms). */
    runAt: z.union([z.string().datetime({ offset: true }), z.number().int().nonnegative()]).optional(),
  })
  .refine((b) => b.delayMs === undefined || b.runAt === undefined, { message: "give delayMs or runAt, not both", path: ["runAt"] });

/**
 * fetcher -> classifier: normalized text plus the minted compact id. title and
 * body are normalizeText output; classifier and enricher rely on it and do not
 * normalize them again.
 */
export const FetchedArticle = z.object({
  feedId: FeedId,
  title: z.string().min(1),
  body: z.string(),
  url: z.string().optional(),
  source: z.string().optional(),
  publishedAt: z.string().optional(),
  clientId: z.string().optional(),
});
export type FetchedArticle = z.infer<typeof FetchedArticle>;

/** classifier -> enricher. */
export const ClassifiedArticle = FetchedArticle.extend({
  topic: TopicName,
  confidence: z.number().min(0).max(1),
});
export type ClassifiedArticle = z.infer<typeof ClassifiedArticle>;

/** enricher -> fanout: only the id and topic travel; the article is stored. */
export const EnrichedArticle = z.object({ feedId: FeedId, topic: TopicName });
export type EnrichedArticle = z.infer<typeof EnrichedArticle>;

/** Interests of a user: 0-11 unique topics. */
export const Interests = z
  .array(TopicName)
  .max(TOPICS.length)
  .refine((list) => new Set(list).size === list.length, { message: "interests must be unique" });

/** One item of a feed page (public API contract). */
export interface FeedItem {
  id: string;
  runId: string;
  title: string;
  summary: string;
  topic: string;
  url?: string;
  source?: string;
  publishedAt?: string;
  keywords: string[];
  readingMinutes?: number;
  confidence?: number;
}
