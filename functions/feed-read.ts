/**
 * Reading feeds for live updates: the items that entered a user's feed after
 * a given feed id. (Stand-in until the news branch's feed module lands.)
 */
import type { Keys } from "./keys";
import type { RedisClient } from "./redis";

/** One feed item, as GET /v1/feeds/:uid and the SSE stream return it. */
export interface FeedItem {
  id: string;
  runId: string;
  title: string;
  summary: string;
  topic: string;
  url?: string;
  source?: string;
  publishedAt?: string;
  keywords: string[];
}

const SCAN_CHUNK = 100;
const MAX_REPLAY = 500;

function parseKeywords(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String);
  if (typeof value !== "string" || value === "") return [];
  try {
    const parsed = JSON.parse(value);
    if (Array.isArray(parsed)) return parsed.map(String);
  } catch {
    /* comma-separated */
  }
  return value.split(",").map((k) => k.trim()).filter(Boolean);
}

/** Hydrates feed ids into items (missing article bodies are skipped). */
export async function hydrateFeedIds(redis: RedisClient, keys: Keys, ids: string[]): Promise<FeedItem[]> {
  if (ids.length === 0) return [];
  const pipe = redis.pipeline();
  for (const id of ids) pipe.hgetall(keys.article(id));
  const rows = (await pipe.exec()) as Array<Record<string, unknown> | null>;
  const items: FeedItem[] = [];
  rows.forEach((row, i) => {
    if (!row || Object.keys(row).length === 0) return;
    const str = (k: string) => (row[k] === undefined || row[k] === null || row[k] === "" ? undefined : String(row[k]));
    items.push({
      id: ids[i],
      runId: str("runId") ?? "",
      title: str("title") ?? "",
      summary: str("summary") ?? "",
      topic: str("topic") ?? "",
      ...(str("url") ? { url: str("url") } : {}),
      ...(str("source") ? { source: str("source") } : {}),
      ...(str("publishedAt") ? { publishedAt: str("publishedAt") } : {}),
      keywords: parseKeywords(row.keywords),
    });
  });
  return items;
}

/**
 * Items that entered `uid`'s feed after `afterFeedId`, newest first. Walks the
 * list (newest first) down to that id, so the answer follows delivery order;
 * when the id is gone (trimmed) or null, returns up to the newest 500.
 */
export async function readFeedSince(redis: RedisClient, keys: Keys, uid: string, afterFeedId: string | null): Promise<FeedItem[]> {
  const key = keys.feed(uid);
  const ids: string[] = [];
  for (let start = 0; start < MAX_REPLAY; start += SCAN_CHUNK) {
    const chunk = (await redis.lrange<string>(key, start, start + SCAN_CHUNK - 1)).map(String);
    const at = afterFeedId === null ? -1 : chunk.indexOf(afterFeedId);
    if (at >= 0) {
      ids.push(...chunk.slice(0, at));
      break;
    }
    ids.push(...chunk);
    if (chunk.length < SCAN_CHUNK) break;
  }
  return hydrateFeedIds(redis, keys, ids.slice(0, MAX_REPLAY));
}
