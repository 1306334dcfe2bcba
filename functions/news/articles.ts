/**
 * Stored articles: one hash per article (`item`: the public feed item as
 * JSON, `body`: the normalized text), written once by the enricher; feeds and
 * topic lists hold only compact ids and are hydrated from here.
 */
import type { Keys } from "../keys";
import type { RedisClient } from "../redis";
import type { FeedItem } from "./schema";

/**
 * Stores an article once (idempotent: same id, same content) with a TTL.
 * Two plain commands, not MULTI (two commands instead of four), sent side by
 * side with those of the other articles of the batch: one /pipeline request
 * over REST (the client auto-pipelines), one socket write in-process (the
 * worker-host's requester corks the tick's commands). If the stage dies between HSET and EXPIRE it is not
 * committed, and its redelivery writes both again, so the hash never stays
 * without its TTL once the stage committed.
 */
export async function storeArticle(redis: RedisClient, keys: Keys, item: FeedItem, body: string, ttlSeconds: number): Promise<void> {
  const key = keys.article(item.id);
  await Promise.all([redis.hset(key, { item: JSON.stringify(item), body }), redis.expire(key, ttlSeconds)]);
}

function decodeItem(raw: unknown): FeedItem | undefined {
  if (raw === null || raw === undefined) return undefined;
  // @upstash/redis parses JSON values itself; other transports hand back the string.
  const obj = typeof raw === "string" ? (JSON.parse(raw) as unknown) : raw;
  return typeof obj === "object" && obj !== null ? (obj as FeedItem) : undefined;
}

/** Hydrates feed ids into feed items in one pipeline; ids whose article expired are left out. */
export async function hydrate(redis: RedisClient, keys: Keys, ids: string[]): Promise<FeedItem[]> {
  if (ids.length === 0) return [];
  const pipe = redis.pipeline();
  for (const id of ids) pipe.hget(keys.article(id), "item");
  const replies = (await pipe.exec()) as unknown[];
  const items: FeedItem[] = [];
  replies.forEach((raw) => {
    const item = decodeItem(raw);
    if (item) items.push(item);
  });
  return items;
}

/** Reads one stored article with its body, or null. */
export async function readArticle(redis: RedisClient, keys: Keys, id: string): Promise<(FeedItem & { body: string }) | null> {
  const fields = await redis.hmget<Record<string, unknown>>(keys.article(id), "item", "body");
  const decoded = decodeItem(fields?.item);
  if (!decoded) return null;
  const body = fields?.body;
  return { ...decoded, body: body === null || body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body) };
}
