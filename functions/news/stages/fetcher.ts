/**
 * Stage 1, fetcher: normalizes the article text, computes its canonical URL
 * and content hash, drops exact duplicates (same canonical URL or same
 * normalized title + body) seen within DEDUPE_TTL_SECONDS, and mints the
 * article's compact feed id.
 *
 * Redelivery-safe: dedupe markers hold the run id that claimed them (a
 * redelivered run finds its own claim, not a duplicate), and the feed id is
 * minted once per run (mint-feed-id.lua keeps run -> feed id).
 */
import { defineStage, type StageContext } from "../../pipeline";
import { evalScript } from "../../redis";
import { sha256Hex } from "../../tools/cache";
import { canonicalUrl, contentHashOfNormalized, normalizeText } from "../normalize";
import { newsSettings } from "../config";
import { ArticleInput, type FetchedArticle } from "../schema";

/**
 * Claims the dedupe markers (canonical URL, content hash) for this run in one
 * round trip (one /pipeline request over REST, one socket write in-process). Returns the first marker another run owns, or undefined when
 * this run owns them all. A redelivered run finds its own run id: no duplicate.
 */
async function claimMarkers(ctx: StageContext, markers: Array<{ key: string; reason: string }>, ttlSeconds: number): Promise<{ reason: string; owner: string } | undefined> {
  // Plain commands, sent side by side with those of the other articles of the batch (see claimMarkers).
  const previous = (await Promise.all(markers.map((m) => ctx.redis.set(m.key, ctx.runId, { nx: true, ex: ttlSeconds, get: true })))) as unknown[];
  for (let i = 0; i < markers.length; i++) {
    // SET NX GET answers the old value (someone else's claim) or null (ours now).
    const owner = previous[i];
    if (owner !== null && owner !== undefined && String(owner) !== ctx.runId) return { reason: markers[i].reason, owner: String(owner) };
  }
  return undefined;
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
    // title and body are normalized already: hash them as they are (one normalization per article).
    const [hash, urlHash] = await Promise.all([contentHashOfNormalized(title, body), url ? sha256Hex(url) : undefined]);

    const markers = [
      ...(urlHash ? [{ key: ctx.keys.seenUrl(urlHash), reason: "duplicate-url" }] : []),
      { key: ctx.keys.seenContent(hash), reason: "duplicate-content" },
    ];
    const duplicate = await claimMarkers(ctx, markers, settings.DEDUPE_TTL_SECONDS);
    if (duplicate) {
      const detail = duplicate.reason === "duplicate-url" ? { url } : { contentHash: hash.slice(0, 16) };
      return { skipped: duplicate.reason.replace("-", " "), result: { reason: duplicate.reason, duplicateOf: duplicate.owner, ...detail } };
    }
    const feedId = String(await evalScript(ctx.redis, "mintFeedId", [ctx.keys.articleSeq(), ctx.keys.runFeedId(ctx.runId)], [settings.DEDUPE_TTL_SECONDS]));

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
