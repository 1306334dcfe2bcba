/**
 * Server-side fan-out of one article to every subscriber of its topic:
 * one fan-out.lua call per non-empty bucket, all in flight at once (the
 * client pipelines them). Each call is idempotent per (article, bucket).
 */
import type { Keys } from "../keys";
import { evalScript, type RedisClient } from "../redis";

export interface FanOutOptions {
  feedCap: number;
  markerTtlSeconds: number;
}

/** Buckets whose subscriber set for `topic` is non-empty (one pipelined SCARD round). */
export async function bucketsWithSubscribers(redis: RedisClient, keys: Keys, topic: string): Promise<number[]> {
  const pipe = redis.pipeline();
  for (const b of keys.allBuckets) pipe.scard(keys.subscribers(topic, b));
  const counts = (await pipe.exec()) as unknown[];
  return keys.allBuckets.filter((b) => Number(counts[b]) > 0);
}

/** Runs fan-out.lua for one (article, bucket); returns the feeds written (0 on a repeat). */
export async function fanOutToBucket(redis: RedisClient, keys: Keys, feedId: string, topic: string, bucket: number, { feedCap, markerTtlSeconds }: FanOutOptions): Promise<number> {
  const delivered = await evalScript<number>(
    redis,
    "fanOut",
    [keys.subscribers(topic, bucket), keys.fanoutDone(feedId, bucket)],
    [feedId, topic, keys.feedKeyPrefix(bucket), feedCap, markerTtlSeconds, keys.feedChannel(bucket)],
  );
  return Number(delivered);
}

/** Fans one article out to all buckets with subscribers; returns deliveries made by this call. */
export async function fanOutArticle(redis: RedisClient, keys: Keys, feedId: string, topic: string, options: FanOutOptions): Promise<{ buckets: number; delivered: number }> {
  const buckets = await bucketsWithSubscribers(redis, keys, topic);
  const counts = await Promise.all(buckets.map((b) => fanOutToBucket(redis, keys, feedId, topic, b, options)));
  return { buckets: buckets.length, delivered: counts.reduce((s, n) => s + n, 0) };
}
