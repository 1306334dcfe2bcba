/**
 * Stage 2, classifier: one topic of the fixed list plus a confidence. The
 * offline lexicon model runs by default (no downloads); when an LLM is
 * configured (LLM_BASE_URL or a Workers AI binding with LLM_MODEL) it asks
 * the LLM through the tool cache, falling back to the offline model when the
 * LLM fails, so a flaky endpoint never stalls the pipeline. With an LLM the
 * stage has a token budget per article source (LLM_TOKENS_PER_MINUTE):
 * charged an estimate before the call, corrected by the usage reported.
 */
import { defineStage } from "../../pipeline";
import { classifyTopic } from "../classify";
import { newsSettings } from "../config";
import { classifyWithLlm, estimateLlmTokens, llmBackend } from "../llm";
import { FetchedArticle, type ClassifiedArticle } from "../schema";

export const classifier = defineStage({
  name: "classifier",
  input: FetchedArticle,
  next: ["enricher"],
  budget: {
    key: (article) => article.source ?? "unknown",
    // 0 (no budget, no flow-control cost at all) unless an LLM is configured.
    tokensPerMinute: (env) => (llmBackend(env, newsSettings(env)) ? newsSettings(env).LLM_TOKENS_PER_MINUTE : 0),
    estimate: (article) => estimateLlmTokens(article.title, article.body),
    // Six seconds' worth at once: a burst of articles does not spend the whole minute up front.
    burst: (env) => newsSettings(env).LLM_TOKENS_PER_MINUTE / 10,
  },
  handle: async (article, ctx) => {
    const settings = newsSettings(ctx.env);
    // The fetcher's output is normalized text: no second normalization here.
    const offline = classifyTopic(article.title, article.body, { normalized: true });
    const backend = llmBackend(ctx.env, settings);
    let topic = offline.topic;
    let confidence = offline.confidence;
    let model = "offline-lexicon";
    let cacheHit: boolean | undefined;
    let llmError: string | undefined;
    if (backend) {
      try {
        const llm = await classifyWithLlm(ctx.redis, ctx.keys, backend, settings, article.title, article.body, ctx.trace);
        topic = llm.topic;
        // The LLM gives no score; agreement with the offline model is the best signal there is.
        confidence = llm.topic === offline.topic ? Math.max(0.9, offline.confidence) : 0.75;
        model = `${backend.kind}:${backend.model}`;
        cacheHit = llm.hit;
        ctx.reportCost(llm.tokens);
      } catch (err) {
        llmError = (err as Error).message;
      }
    }
    const out: ClassifiedArticle = { ...article, topic, confidence };
    return {
      emit: [{ payload: out }],
      result: { feedId: article.feedId, topic, confidence, model, ...(cacheHit !== undefined ? { cacheHit } : {}), ...(llmError ? { llmError } : {}) },
    };
  },
});
