/**
 * Server-side fan-out of one article to every subscriber of its topic:
 * one fan-out.lua call per bucket (an empty bucket answers -1 at once), all
 * in flight at once (the client pipelines them). Each call is idempotent per
 * (article, bucket).
 */
import type { Keys } from "../keys";
import { LUA } from "../lua.generated";
import { evalScript, type RedisClient } from "../redis";

export interface FanOutOptions {
  feedCap: number;
  markerTtlSeconds: number;
}

/**
 * Runs fan-out.lua for one (article, bucket). Returns the feeds written,
 * 0 on a repeat, -1 when the bucket has no subscriber of the topic.
 * EVALSHA straight away with the arguments already strings (this runs 16
 * times per article); evalScript (EVAL) only when the server lacks the script.
 */
async function fanOutToBucketRaw(redis: RedisClient, keys: Keys, feedId: string, topic: string, bucket: number, cap: string, ttl: string): Promise<number> {
  const scriptKeys = [keys.subscribers(topic, bucket), keys.fanoutDone(feedId, bucket)];
  const args = [feedId, topic, keys.feedKeyPrefix(bucket), cap, ttl, keys.feedChannel(bucket)];
  try {
    return Number(await redis.evalsha(LUA.fanOut.sha, scriptKeys, args));
  } catch (err) {
    if (!(err instanceof Error) || !err.message.includes("NOSCRIPT")) throw err;
    return Number(await evalScript<number>(redis, "fanOut", scriptKeys, args));
  }
}

/** Runs fan-out.lua for one (article, bucket); returns the feeds written (0 on a repeat or an empty bucket). */
export async function fanOutToBucket(redis: RedisClient, keys: Keys, feedId: string, topic: string, bucket: number, { feedCap, markerTtlSeconds }: FanOutOptions): Promise<number> {
  return Math.max(0, await fanOutToBucketRaw(redis, keys, feedId, topic, bucket, String(feedCap), String(markerTtlSeconds)));
}

/**
 * Fans one article out to all buckets with subscribers; returns how many
 * buckets have subscribers and the deliveries made by this call. Every bucket
 * gets one script call (all in flight at once): the script answers -1 for a
 * bucket without subscribers, which costs less than asking each bucket first
 * (an SCARD round of one call per bucket, then the script calls).
 */
export async function fanOutArticle(redis: RedisClient, keys: Keys, feedId: string, topic: string, options: FanOutOptions): Promise<{ buckets: number; delivered: number }> {
  const cap = String(options.feedCap);
  const ttl = String(options.markerTtlSeconds);
  const counts = await Promise.all(keys.allBuckets.map((b) => fanOutToBucketRaw(redis, keys, feedId, topic, b, cap, ttl)));
  let buckets = 0;
  let delivered = 0;
  for (const n of counts) {
    if (n < 0) continue;
    buckets++;
    delivered += n;
  }
  return { buckets, delivered };
}
