/**
 * Stage 3, enricher: extractive summary (<= 2 sentences, <= 280 chars),
 * keywords and reading time, then stores the article once as a hash under
 * its compact feed id. Only the id and topic travel on.
 *
 * The enrichment is cheap local string code, computed directly by default;
 * ENRICH_CACHE=on routes it through the tool cache (worth it once it becomes
 * an expensive or remote call). Either way the result is deterministic, so a
 * redelivered article stores the same content again.
 */
import { defineStage } from "../../pipeline";
import { cachedTool } from "../../tools/cache";
import { storeArticle } from "../articles";
import { newsSettings } from "../config";
import { extractKeywords, readingTimeMinutes, summarize } from "../enrich";
import { streamLlmSummary, summaryBackend } from "../llm-summary";
import { ClassifiedArticle, type EnrichedArticle, type FeedItem } from "../schema";

export const enricher = defineStage({
  name: "enricher",
  input: ClassifiedArticle,
  next: ["fanout"],
  handle: async (article, ctx) => {
    const settings = newsSettings(ctx.env);
    // The fetcher's output is normalized text: no second normalization here.
    const enrich = () => ({
      summary: summarize(article.body || article.title, { maxSentences: 2, maxChars: 280, normalized: true }),
      keywords: extractKeywords(article.title, article.body, 6, { normalized: true }),
      readingMinutes: readingTimeMinutes(article.body ? `${article.title} ${article.body}` : article.title, 200, { normalized: true }),
    });
    let enrichment: ReturnType<typeof enrich>;
    let hit: boolean | undefined;
    if (settings.ENRICH_CACHE === "on") {
      ({ value: enrichment, hit } = await cachedTool(ctx.redis, ctx.keys, {
        tool: "enrich",
        args: { v: 1, title: article.title, body: article.body },
        ttlSeconds: settings.ENRICH_CACHE_TTL_SECONDS,
        trace: ctx.trace,
        fn: enrich,
      }));
    } else {
      enrichment = enrich();
    }
    // LLM_SUMMARY=on: the model's summary replaces the extractive one, its tokens streamed to the run's output.
    const llm = summaryBackend(settings);
    if (llm) enrichment = { ...enrichment, summary: await streamLlmSummary(llm, article.title, article.body, ctx.stream, { trace: ctx.trace }) };
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
      result: { feedId: article.feedId, keywords: enrichment.keywords, readingMinutes: enrichment.readingMinutes, summaryChars: enrichment.summary.length, ...(llm ? { summaryBy: llm.model } : {}), ...(hit !== undefined ? { cacheHit: hit } : {}) },
    };
  },
});
