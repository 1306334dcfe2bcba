/**
 * Server-side fan-out of articles to every subscriber of their topic:
 * fan-out.lua per bucket (an empty bucket answers -1 at once), all buckets in
 * flight at once. Each (article, bucket) is idempotent.
 *
 * Articles fanned out in the same tick on the same client (the fanout stage
 * runs a whole batch of envelopes synchronously up to this call) travel
 * together: one script call per bucket carrying all of them, instead of one
 * call per article and bucket. For a batch of 100 articles and 16 buckets
 * that is 16 calls instead of 1,600, which is most of the fanout stage's
 * client CPU and of the worker-host's garbage (every command costs a few KB
 * of client objects, kept alive until the batch's replies are in). Inside
 * the script each article is handled exactly as if it had its own call.
 */
import type { Keys } from "../keys";
import { LUA } from "../lua.generated";
import { evalScript, type RedisClient } from "../redis";

export interface FanOutOptions {
  feedCap: number;
  markerTtlSeconds: number;
}

/** Most articles in one script call (keeps every call short on the server). */
const MAX_ARTICLES_PER_CALL = 128;

/** Most topics whose per-bucket subscriber keys are remembered per key builder. */
const MAX_CACHED_TOPICS = 64;
const subscriberKeyCache = new WeakMap<Keys, Map<string, string[]>>();

/** keys.subscribers(topic, b) for every bucket b, remembered for the few topics there are (bounded). */
function subscriberKeys(keys: Keys, topic: string): string[] {
  let byTopic = subscriberKeyCache.get(keys);
  if (!byTopic) subscriberKeyCache.set(keys, (byTopic = new Map()));
  let list = byTopic.get(topic);
  if (!list) {
    list = keys.allBuckets.map((b) => keys.subscribers(topic, b));
    if (byTopic.size < MAX_CACHED_TOPICS) byTopic.set(topic, list);
  }
  return list;
}

/**
 * Runs fan-out.lua for some articles of one bucket (it also counts the
 * deliveries, in the bucket's fanoutStats). Returns per article the feeds
 * written, 0 on a repeat, -1 when the bucket has no subscriber of its topic. EVALSHA straight away with the arguments already strings; evalScript
 * (EVAL) only when the server lacks the script.
 */
async function fanOutBucketCall(redis: RedisClient, keys: Keys, bucket: number, cap: string, ttl: string, articles: ReadonlyArray<{ feedId: string; topic: string }>): Promise<number[]> {
  const scriptKeys: string[] = new Array(1 + articles.length * 2);
  scriptKeys[0] = keys.fanoutStats(bucket);
  const args: string[] = new Array(4 + articles.length * 2);
  args[0] = keys.feedKeyPrefix(bucket);
  args[1] = cap;
  args[2] = ttl;
  args[3] = keys.feedChannel(bucket);
  for (let i = 0; i < articles.length; i++) {
    const { feedId, topic } = articles[i];
    scriptKeys[1 + 2 * i] = subscriberKeys(keys, topic)[bucket];
    scriptKeys[2 + 2 * i] = keys.fanoutDone(feedId, bucket);
    args[4 + 2 * i] = feedId;
    args[5 + 2 * i] = topic;
  }
  let reply: unknown;
  try {
    reply = await redis.evalsha(LUA.fanOut.sha, scriptKeys, args);
  } catch (err) {
    if (!(err instanceof Error) || !err.message.includes("NOSCRIPT")) throw err;
    reply = await evalScript<unknown>(redis, "fanOut", scriptKeys, args);
  }
  if (!Array.isArray(reply) || reply.length !== articles.length) throw new Error(`fan-out.lua answered ${JSON.stringify(reply)} for ${articles.length} article(s)`);
  return reply.map(Number);
}

/** Runs fan-out.lua for one (article, bucket); returns the feeds written (0 on a repeat or an empty bucket). */
export async function fanOutToBucket(redis: RedisClient, keys: Keys, feedId: string, topic: string, bucket: number, { feedCap, markerTtlSeconds }: FanOutOptions): Promise<number> {
  const [n] = await fanOutBucketCall(redis, keys, bucket, String(feedCap), String(markerTtlSeconds), [{ feedId, topic }]);
  return Math.max(0, n);
}

/** One article waiting in a tick's group. */
interface PendingArticle {
  feedId: string;
  topic: string;
  buckets: number;
  delivered: number;
  /** Bucket calls not answered yet. */
  waiting: number;
  failed: boolean;
  resolve(value: { buckets: number; delivered: number }): void;
  reject(err: unknown): void;
}

/** Articles fanned out in the current tick with the same client, keys and options. */
interface TickGroup {
  redis: RedisClient;
  keys: Keys;
  cap: string;
  ttl: string;
  articles: PendingArticle[];
}

// Groups of the current tick, sent (and emptied) by a microtask. Nothing survives the tick.
let openGroups: TickGroup[] = [];

function flushGroups(): void {
  const groups = openGroups;
  openGroups = [];
  for (const group of groups) sendGroup(group);
}

function sendGroup({ redis, keys, cap, ttl, articles }: TickGroup): void {
  for (let start = 0; start < articles.length; start += MAX_ARTICLES_PER_CALL) {
    const chunk = articles.length <= MAX_ARTICLES_PER_CALL ? articles : articles.slice(start, start + MAX_ARTICLES_PER_CALL);
    for (const bucket of keys.allBuckets) {
      fanOutBucketCall(redis, keys, bucket, cap, ttl, chunk).then(
        (counts) => {
          for (let i = 0; i < chunk.length; i++) {
            const a = chunk[i];
            const n = counts[i];
            if (n >= 0) {
              a.buckets++;
              a.delivered += n;
            }
            if (--a.waiting === 0 && !a.failed) a.resolve({ buckets: a.buckets, delivered: a.delivered });
          }
        },
        (err: unknown) => {
          for (const a of chunk) {
            a.waiting--;
            if (!a.failed) {
              a.failed = true;
              a.reject(err);
            }
          }
        },
      );
    }
  }
}

/**
 * Fans one article out to all buckets with subscribers; returns how many
 * buckets have subscribers and the deliveries made by this call. Every bucket
 * gets a script call (the script answers -1 for a bucket without
 * subscribers, which costs less than asking each bucket first); the calls
 * carry every article fanned out in the same tick (see the module comment).
 * A failed call fails every article it carried (they are retried; the
 * per-(article, bucket) markers keep retries from delivering twice).
 */
export function fanOutArticle(redis: RedisClient, keys: Keys, feedId: string, topic: string, options: FanOutOptions): Promise<{ buckets: number; delivered: number }> {
  const cap = String(options.feedCap);
  const ttl = String(options.markerTtlSeconds);
  try {
    // Validate now, so a bad id or topic fails this article alone (not the tick's group).
    keys.fanoutDone(feedId, 0);
    keys.subscribers(topic, 0);
  } catch (err) {
    return Promise.reject(err);
  }
  let group: TickGroup | undefined;
  for (const g of openGroups) {
    if (g.redis === redis && g.keys === keys && g.cap === cap && g.ttl === ttl) {
      group = g;
      break;
    }
  }
  if (!group) {
    if (openGroups.length === 0) queueMicrotask(flushGroups);
    group = { redis, keys, cap, ttl, articles: [] };
    openGroups.push(group);
  }
  const articles = group.articles;
  return new Promise((resolve, reject) => {
    articles.push({ feedId, topic, buckets: 0, delivered: 0, waiting: keys.feedBuckets, failed: false, resolve, reject });
  });
}

/** Topic listings of the current tick, per client and key builder. */
interface ListingGroup {
  redis: RedisClient;
  keys: Keys;
  topicListCap: number;
  /** topic -> feed ids to list, in call order. */
  byTopic: Map<string, string[]>;
  waiters: Array<{ resolve(): void; reject(err: unknown): void }>;
}

let openListings: ListingGroup[] = [];

function flushListings(): void {
  const groups = openListings;
  openListings = [];
  for (const g of groups) {
    const { redis, keys } = g;
    // Plain commands, not MULTI (the topic lists and the count hash live in
    // different cluster slots). LPUSH of several ids leaves the last one first,
    // as one LPUSH per id in the same order did.
    const writes: Array<Promise<unknown>> = [];
    for (const [topic, ids] of g.byTopic) {
      const list = keys.topicArticles(topic);
      writes.push(redis.lpush(list, ...ids));
      writes.push(redis.ltrim(list, 0, g.topicListCap - 1));
      writes.push(redis.hincrby(keys.topicCounts(), topic, ids.length));
    }
    Promise.all(writes).then(
      () => {
        for (const w of g.waiters) w.resolve();
      },
      (err: unknown) => {
        for (const w of g.waiters) w.reject(err);
      },
    );
  }
}

/**
 * After an article's fan-out, the first time (`firstListing`): lists it under
 * its topic (LPUSH, LTRIM to `topicListCap`, HINCRBY of the topic's count).
 * Deliveries are counted by fan-out.lua itself. The writes of the articles
 * that get here in the same tick on the same client go out together (one
 * LPUSH/LTRIM/HINCRBY per topic) instead of three commands per article; the
 * promise settles when they are all done (a failure fails every article of
 * the group, which is then retried like before).
 */
export function recordFanOut(redis: RedisClient, keys: Keys, { feedId, topic, firstListing, topicListCap }: { feedId: string; topic: string; firstListing: boolean; topicListCap: number }): Promise<void> {
  if (!firstListing) return Promise.resolve();
  try {
    // Validate now, so a bad topic fails this article alone.
    keys.topicArticles(topic);
  } catch (err) {
    return Promise.reject(err);
  }
  let group: ListingGroup | undefined;
  for (const g of openListings) {
    if (g.redis === redis && g.keys === keys && g.topicListCap === topicListCap) {
      group = g;
      break;
    }
  }
  if (!group) {
    if (openListings.length === 0) queueMicrotask(flushListings);
    group = { redis, keys, topicListCap, byTopic: new Map(), waiters: [] };
    openListings.push(group);
  }
  const ids = group.byTopic.get(topic);
  if (ids) ids.push(feedId);
  else group.byTopic.set(topic, [feedId]);
  const waiters = group.waiters;
  return new Promise((resolve, reject) => waiters.push({ resolve, reject }));
}
