/**
 * Stage 3, enricher: extractive summary (<= 2 sentences, <= 280 chars),
 * keywords and reading time, through the tool cache (a re-posted or
 * redelivered article costs a cache read), then stores the article once as a
 * hash under its compact feed id. Only the id and topic travel on.
 */
import { defineStage } from "../../pipeline";
import { cachedTool } from "../../tools/cache";
import { storeArticle } from "../articles";
import { newsSettings } from "../config";
import { extractKeywords, readingTimeMinutes, summarize } from "../enrich";
import { ClassifiedArticle, type EnrichedArticle, type FeedItem } from "../schema";

export const enricher = defineStage({
  name: "enricher",
  input: ClassifiedArticle,
  next: ["fanout"],
  handle: async (article, ctx) => {
    const settings = newsSettings(ctx.env);
    const text = article.body || article.title;
    const { value: enrichment, hit } = await cachedTool(ctx.redis, ctx.keys, {
      tool: "enrich",
      args: { v: 1, title: article.title, body: article.body },
      ttlSeconds: settings.ENRICH_CACHE_TTL_SECONDS,
      fn: () => ({
        summary: summarize(text, { maxSentences: 2, maxChars: 280 }),
        keywords: extractKeywords(article.title, article.body, 6),
        readingMinutes: readingTimeMinutes(`${article.title} ${article.body}`),
      }),
    });
    const item: FeedItem = {
      id: article.feedId,
      runId: ctx.runId,
      title: article.title,
      summary: enrichment.summary,
      topic: article.topic,
      ...(article.url ? { url: article.url } : {}),
      ...(article.source ? { source: article.source } : {}),
      ...(article.publishedAt ? { publishedAt: article.publishedAt } : {}),
      keywords: enrichment.keywords,
      readingMinutes: enrichment.readingMinutes,
      confidence: Math.round(article.confidence * 1000) / 1000,
    };
    await storeArticle(ctx.redis, ctx.keys, item, article.body, settings.ARTICLE_TTL_SECONDS);
    const out: EnrichedArticle = { feedId: article.feedId, topic: article.topic };
    return {
      emit: [{ payload: out }],
      result: { feedId: article.feedId, keywords: enrichment.keywords, readingMinutes: enrichment.readingMinutes, summaryChars: enrichment.summary.length, cacheHit: hit },
    };
  },
});
