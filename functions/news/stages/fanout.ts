/**
 * Stage 4, fanout: pushes the article's compact id into the feed of every
 * subscriber of its topic, server-side (fan-out.lua, one call per non-empty
 * bucket), counts the deliveries, and lists the article under its topic once.
 */
import { defineStage } from "../../pipeline";
import { newsSettings } from "../config";
import { fanOutArticle } from "../fan-out";
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
    // Plain commands, not MULTI (the topic list and the counter hashes live in
    // different cluster slots); the client's auto-pipelining sends them, with
    // those of the other articles of the batch, in one write.
    const writes: Array<Promise<unknown>> = [];
    if (firstListing === 1) {
      writes.push(redis.lpush(keys.topicArticles(topic), feedId));
      writes.push(redis.ltrim(keys.topicArticles(topic), 0, settings.TOPIC_LIST_CAP - 1));
      writes.push(redis.hincrby(keys.topicCounts(), topic, 1));
    }
    if (delivered > 0) writes.push(redis.hincrby(keys.counters(), "fanout_deliveries", delivered));
    await Promise.all(writes);
    return { result: { feedId, topic, buckets, delivered } };
  },
});
