/**
 * Stage 1, fetcher: normalizes the article text, computes its canonical URL
 * and content hash, drops exact duplicates (same canonical URL or same
 * normalized title + body) seen within DEDUPE_TTL_SECONDS, and mints the
 * article's compact feed id.
 *
 * Redelivery-safe: dedupe markers hold the run id that claimed them (a
 * redelivered run finds its own claim, not a duplicate), and the feed id is
 * minted once per run (SET NX of run -> feed id).
 */
import { defineStage, type StageContext } from "../../pipeline";
import { sha256Hex } from "../../tools/cache";
import { canonicalUrl, contentHash, normalizeText } from "../normalize";
import { newsSettings } from "../config";
import { ArticleInput, type FetchedArticle } from "../schema";

/** Claims a dedupe marker for this run; returns the run that owns it. */
async function claim(ctx: StageContext, key: string, ttlSeconds: number): Promise<string> {
  if ((await ctx.redis.set(key, ctx.runId, { nx: true, ex: ttlSeconds })) === "OK") return ctx.runId;
  const owner = await ctx.redis.get(key);
  // The marker may have expired between SET NX and GET: claim it again.
  if (owner === null) return claim(ctx, key, ttlSeconds);
  return String(owner);
}

/** Mints the run's compact feed id once: INCR the global sequence, then SET NX run -> id. */
async function mintFeedId(ctx: StageContext, ttlSeconds: number): Promise<string> {
  const key = ctx.keys.runFeedId(ctx.runId);
  const existing = await ctx.redis.get(key);
  if (existing !== null) return String(existing);
  const minted = Number(await ctx.redis.incr(ctx.keys.articleSeq())).toString(36);
  if ((await ctx.redis.set(key, minted, { nx: true, ex: ttlSeconds })) === "OK") return minted;
  // A concurrent delivery of this run won: use its id (ours is simply never used).
  return String(await ctx.redis.get(key));
}

export const fetcher = defineStage({
  name: "fetcher",
  input: ArticleInput,
  next: ["classifier"],
  handle: async (article, ctx) => {
    const settings = newsSettings(ctx.env);
    const title = normalizeText(article.title);
    const body = normalizeText(article.body);
    if (!title) return { skipped: "empty title after normalization", result: { reason: "empty" } };
    const url = article.url ? canonicalUrl(article.url) : undefined;
    const hash = await contentHash(title, body);

    const mintedBefore = await ctx.redis.get(ctx.keys.runFeedId(ctx.runId));
    if (mintedBefore === null) {
      // Redelivered runs that already minted an id passed dedupe before; everyone else checks.
      if (url) {
        const owner = await claim(ctx, ctx.keys.seenUrl(await sha256Hex(url)), settings.DEDUPE_TTL_SECONDS);
        if (owner !== ctx.runId) return { skipped: "duplicate url", result: { reason: "duplicate-url", duplicateOf: owner, url } };
      }
      const owner = await claim(ctx, ctx.keys.seenContent(hash), settings.DEDUPE_TTL_SECONDS);
      if (owner !== ctx.runId) return { skipped: "duplicate content", result: { reason: "duplicate-content", duplicateOf: owner, contentHash: hash.slice(0, 16) } };
    }
    const feedId = await mintFeedId(ctx, settings.DEDUPE_TTL_SECONDS);

    const out: FetchedArticle = {
      feedId,
      title,
      body,
      ...(url ? { url } : {}),
      ...(article.source ? { source: normalizeText(article.source) || article.source } : {}),
      ...(article.publishedAt ? { publishedAt: article.publishedAt } : {}),
      ...(article.id ? { clientId: article.id } : {}),
    };
    return {
      emit: [{ payload: out }],
      result: { feedId, contentHash: hash.slice(0, 16), ...(url ? { url } : {}), chars: title.length + body.length },
    };
  },
});
