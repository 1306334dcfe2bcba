/**
 * Checks of the news pipeline's end state, shared by the end-to-end test and
 * the measurement tool: wait until runs finish, then compare every user's
 * feed with what fan-out must have delivered (read from the run checkpoints).
 * Reads raw values over iovalkey (no JSON deserialization in the way).
 */
import type { Keys } from "../../functions/keys";
import type { UserProfile } from "../../functions/news/users";
import { execMany, type Connection } from "../valkey";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Reads the `status` of many runs, pipelined in chunks. */
export async function runStatuses(conn: Connection, keys: Keys, runIds: string[]): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < runIds.length; i += 2000) {
    const replies = await execMany(conn, runIds.slice(i, i + 2000).map((id) => ["hget", keys.run(id), "status"]));
    for (const [err, value] of replies) out.push(err ? "error" : String(value ?? "missing"));
  }
  return out;
}

/** Waits until no run is "running"; `onProgress(done, total)` as they finish. Returns the statuses. */
export async function waitForRuns(conn: Connection, keys: Keys, runIds: string[], { timeoutMs = 600_000, onProgress }: { timeoutMs?: number; onProgress?: (done: number, total: number) => void } = {}): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  let pending = runIds;
  const status = new Map<string, string>();
  while (pending.length > 0) {
    const statuses = await runStatuses(conn, keys, pending);
    const still: string[] = [];
    pending.forEach((id, i) => (statuses[i] === "running" ? still.push(id) : status.set(id, statuses[i])));
    pending = still;
    onProgress?.(runIds.length - pending.length, runIds.length);
    if (pending.length === 0) break;
    if (Date.now() > deadline) throw new Error(`${pending.length} of ${runIds.length} runs still running after ${timeoutMs} ms (e.g. ${pending[0]})`);
    await sleep(100);
  }
  return runIds.map((id) => status.get(id)!);
}

export interface DeliveredArticle {
  runId: string;
  feedId: string;
  topic: string;
}

/** The (feedId, topic) of every completed run, from its fanout checkpoint. */
export async function deliveredArticles(conn: Connection, keys: Keys, runIds: string[]): Promise<DeliveredArticle[]> {
  const out: DeliveredArticle[] = [];
  for (let i = 0; i < runIds.length; i += 2000) {
    const chunk = runIds.slice(i, i + 2000);
    const replies = await execMany(conn, chunk.map((id) => ["hget", keys.run(id), "step:fanout"]));
    replies.forEach(([, raw], j) => {
      if (raw === null || raw === undefined) return;
      const step = JSON.parse(String(raw)) as { result?: { feedId?: string; topic?: string } };
      if (step.result?.feedId && step.result.topic) out.push({ runId: chunk[j], feedId: step.result.feedId, topic: step.result.topic });
    });
  }
  return out;
}

export interface FeedCheck {
  users: number;
  /** Users whose feed is exactly right. */
  exact: number;
  /** Users whose expected set exceeded the cap (checked: size == cap, all expected, no duplicates). */
  capped: number;
  duplicates: number;
  missing: number;
  unexpected: number;
  /** Sum over users of expected deliveries (before the cap). */
  expectedDeliveries: number;
  /** Entries buffered in all the users' feeds. */
  feedEntries: number;
  problems: string[];
}

/**
 * Compares every user's feed with the delivered articles of the topics they
 * follow: no duplicates, nothing unexpected; when the expected set fits the
 * cap, nothing missing; when it does not, the feed is full (cap entries).
 */
export async function checkFeeds(conn: Connection, keys: Keys, users: UserProfile[], delivered: DeliveredArticle[], { feedCap }: { feedCap: number }): Promise<FeedCheck> {
  const byTopic = new Map<string, Set<string>>();
  for (const a of delivered) {
    if (!byTopic.has(a.topic)) byTopic.set(a.topic, new Set());
    byTopic.get(a.topic)!.add(a.feedId);
  }
  const check: FeedCheck = { users: users.length, exact: 0, capped: 0, duplicates: 0, missing: 0, unexpected: 0, expectedDeliveries: 0, feedEntries: 0, problems: [] };
  for (let i = 0; i < users.length; i += 1000) {
    const chunk = users.slice(i, i + 1000);
    const replies = await execMany(conn, chunk.map((u) => ["lrange", keys.feed(u.uid), 0, -1]));
    chunk.forEach((u, j) => {
      const feed = (replies[j][1] as string[]) ?? [];
      const expected = new Set<string>();
      for (const t of u.interests) for (const id of byTopic.get(t) ?? []) expected.add(id);
      check.expectedDeliveries += expected.size;
      check.feedEntries += feed.length;
      const seen = new Set(feed);
      const dups = feed.length - seen.size;
      const unexpected = [...seen].filter((id) => !expected.has(id));
      const missing = expected.size <= feedCap ? [...expected].filter((id) => !seen.has(id)) : [];
      const wrongSize = feed.length !== Math.min(feedCap, expected.size);
      check.duplicates += dups;
      check.unexpected += unexpected.length;
      check.missing += missing.length;
      if (dups || unexpected.length || missing.length || wrongSize) {
        if (check.problems.length < 10) check.problems.push(`${u.uid}: ${feed.length} entries, expected ${Math.min(feedCap, expected.size)}; ${dups} dup, ${unexpected.length} unexpected (${unexpected.slice(0, 3)}), ${missing.length} missing (${missing.slice(0, 3)})`);
      } else if (expected.size > feedCap) check.capped++;
      else check.exact++;
    });
  }
  return check;
}
