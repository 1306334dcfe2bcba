/**
 * Reading feeds and topics (Workers-safe): pages of a user's feed with an
 * opaque cursor, the items newer than a given id (SSE replay with
 * Last-Event-ID), the topic overview and a topic's latest items. Feeds hold
 * compact ids; items are hydrated from the stored articles in one pipeline.
 */
import { FeedId, type Keys } from "../keys";
import type { RedisClient } from "../redis";
import { hydrate } from "./articles";
import { TOPICS } from "./classify";
import type { FeedItem } from "./schema";

interface CursorState {
  /** Last feed id of the previous page. */
  a: string;
}

function toBase64Url(text: string): string {
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64Url(text: string): string {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
}

/** Encodes a page cursor (opaque to clients). */
export function encodeCursor(lastId: string): string {
  return toBase64Url(JSON.stringify({ a: lastId } satisfies CursorState));
}

/** Decodes a page cursor; undefined when it is not one of ours. */
export function decodeCursor(cursor: string): CursorState | undefined {
  try {
    const state = JSON.parse(fromBase64Url(cursor)) as CursorState;
    return FeedId.safeParse(state?.a).success ? state : undefined;
  } catch {
    return undefined;
  }
}

/** Feed ids come back through JSON-deserializing clients: "123" may arrive as 123. */
const asIds = (list: unknown[] | null | undefined): string[] => (list ?? []).map((v) => String(v));

/**
 * One page of a user's feed, newest first. The cursor names the last id of
 * the previous page, so items pushed at the head meanwhile do not shift the
 * page; when that id was trimmed away, there is nothing older left.
 */
export async function readFeedPage(redis: RedisClient, keys: Keys, uid: string, { limit, cursor }: { limit: number; cursor?: CursorState }): Promise<{ items: FeedItem[]; nextCursor: string | null }> {
  const feedKey = keys.feed(uid);
  let start = 0;
  if (cursor) {
    const pos = await redis.lpos(feedKey, cursor.a);
    if (pos === null || pos === undefined) return { items: [], nextCursor: null };
    start = Number(pos) + 1;
  }
  // One extra id tells whether there is a next page.
  const ids = asIds(await redis.lrange(feedKey, start, start + limit));
  const pageIds = ids.slice(0, limit);
  const items = await hydrate(redis, keys, pageIds);
  const nextCursor = ids.length > limit ? encodeCursor(pageIds[pageIds.length - 1]) : null;
  return { items, nextCursor };
}

/**
 * The feed items delivered to `uid` after `afterFeedId` (newest first, at most
 * `limit`), for SSE replay with Last-Event-ID. Position in the feed decides;
 * when the id is no longer in the feed, ids numerically greater are returned.
 */
export async function readFeedSince(redis: RedisClient, keys: Keys, uid: string, afterFeedId: string, { limit = 100 }: { limit?: number } = {}): Promise<FeedItem[]> {
  const after = FeedId.parse(afterFeedId);
  const ids = asIds(await redis.lrange(keys.feed(uid), 0, limit - 1));
  const idx = ids.indexOf(after);
  const newer = idx >= 0 ? ids.slice(0, idx) : ids.filter((id) => parseInt(id, 36) > parseInt(after, 36));
  return hydrate(redis, keys, newer);
}

/** Every topic with its subscriber count (summed over buckets) and articles fanned out. */
export async function readTopics(redis: RedisClient, keys: Keys): Promise<Array<{ name: string; subscribers: number; articles: number }>> {
  const pipe = redis.pipeline();
  for (const t of TOPICS) for (const b of keys.allBuckets) pipe.scard(keys.subscribers(t, b));
  const [counts, articles] = await Promise.all([
    pipe.exec() as Promise<unknown[]>,
    redis.hgetall<Record<string, unknown>>(keys.topicCounts()),
  ]);
  return TOPICS.map((name, i) => {
    let subscribers = 0;
    for (let b = 0; b < keys.feedBuckets; b++) subscribers += Number(counts[i * keys.feedBuckets + b] ?? 0);
    return { name, subscribers, articles: Number(articles?.[name] ?? 0) };
  });
}

/** The latest items of one topic, newest first. */
export async function readTopicItems(redis: RedisClient, keys: Keys, topic: string, { limit }: { limit: number }): Promise<FeedItem[]> {
  const ids = asIds(await redis.lrange(keys.topicArticles(topic), 0, limit - 1));
  return hydrate(redis, keys, ids);
}
