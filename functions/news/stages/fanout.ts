/**
 * Stage 4, fanout: pushes the article's compact id into the feed of every
 * subscriber of its topic, server-side (fan-out.lua, one call per bucket,
 * which also counts the deliveries), and lists the article under its topic once.
 * The script calls, listings and counters of the articles of a batch travel
 * together (functions/news/fan-out.ts).
 */
import { defineStage } from "../../pipeline";
import { newsSettings } from "../config";
import { fanOutArticle, recordFanOut } from "../fan-out";
import { EnrichedArticle } from "../schema";

export const fanout = defineStage({
  name: "fanout",
  input: EnrichedArticle,
  next: [],
  handle: async ({ feedId, topic }, ctx) => {
    const settings = newsSettings(ctx.env);
    const { redis, keys } = ctx;
    const fanOut = fanOutArticle(redis, keys, feedId, topic, {
      feedCap: settings.FEED_CAP,
      markerTtlSeconds: settings.FANOUT_MARKER_TTL_SECONDS,
    });
    // The article hash's "listed" flag lists the article under its topic once, also under redelivery.
    const [{ buckets, delivered }, firstListing] = await Promise.all([fanOut, redis.hsetnx(keys.article(feedId), "listed", 1)]);
    // The listing: grouped with those of the other articles of the batch (see recordFanOut).
    await recordFanOut(redis, keys, { feedId, topic, firstListing: firstListing === 1, topicListCap: settings.TOPIC_LIST_CAP });
    return { result: { feedId, topic, buckets, delivered } };
  },
});
