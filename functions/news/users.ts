/**
 * Users and their interests. A profile hash and the topic subscriber sets of
 * the user's bucket change together in one script (set-interests.lua), so
 * fan-out never sees a half-updated user.
 */
import type { Keys } from "../keys";
import { evalScript, type RedisClient } from "../redis";
import { TOPICS, type Topic } from "./classify";

export interface UserProfile {
  uid: string;
  interests: Topic[];
}

/** Replaces a user's interests (creating the user); `interests` must be validated topics. */
export async function setInterests(redis: RedisClient, keys: Keys, uid: string, interests: readonly Topic[], now = Date.now()): Promise<UserProfile> {
  const b = keys.bucketOf(uid);
  const follow = new Set<string>(interests);
  await evalScript(
    redis,
    "setInterests",
    [keys.user(uid), ...TOPICS.map((t) => keys.subscribers(t, b))],
    [uid, now, TOPICS.length, ...TOPICS.map((t) => (follow.has(t) ? 1 : 0)), interests.join(",")],
  );
  return { uid, interests: [...interests] };
}

/** Reads a user's profile, or null when the user does not exist. */
export async function getUser(redis: RedisClient, keys: Keys, uid: string): Promise<UserProfile | null> {
  const hash = await redis.hgetall<Record<string, unknown>>(keys.user(uid));
  if (!hash || Object.keys(hash).length === 0) return null;
  const raw = hash.interests === undefined || hash.interests === null ? "" : String(hash.interests);
  const interests = raw.split(",").filter((t): t is Topic => (TOPICS as readonly string[]).includes(t));
  return { uid, interests };
}

/** Small deterministic PRNG (mulberry32), so demo users are the same on every run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Uid of the i-th demo user (1-based): u0001, u0002, ... */
export function demoUid(i: number): string {
  return `u${String(i).padStart(4, "0")}`;
}

/** The interests the seeder gives demo user `i`: 2-4 distinct topics, deterministic. */
export function demoInterests(i: number): Topic[] {
  const rand = seededRandom(0x5eed + i * 7919);
  const count = 2 + Math.floor(rand() * 3);
  const pool = [...TOPICS];
  const picked: Topic[] = [];
  while (picked.length < count) picked.push(pool.splice(Math.floor(rand() * pool.length), 1)[0]);
  return picked;
}

/**
 * Creates demo users u0001..uNNNN with 2-4 interests each (deterministic), in
 * parallel batches. Idempotent: re-seeding writes the same interests.
 */
export async function seedDemoUsers(redis: RedisClient, keys: Keys, n: number, { concurrency = 200 }: { concurrency?: number } = {}): Promise<UserProfile[]> {
  const users: UserProfile[] = [];
  for (let start = 1; start <= n; start += concurrency) {
    const batch = [];
    for (let i = start; i < Math.min(n + 1, start + concurrency); i++) batch.push(setInterests(redis, keys, demoUid(i), demoInterests(i)));
    users.push(...(await Promise.all(batch)));
  }
  return users;
}

/**
 * How many demo users are seeded. The seeder writes u0001..uN with no gaps, so
 * a galloping search over single-key EXISTS finds N in O(log N) reads (no
 * extra set to keep, and each read touches one key, fine on a cluster).
 */
export async function countDemoUsers(redis: RedisClient, keys: Keys, { max = 100_000 }: { max?: number } = {}): Promise<number> {
  const exists = async (i: number) => (await redis.exists(keys.user(demoUid(i)))) === 1;
  const probes: number[] = [];
  for (let i = 1; i <= max; i *= 2) probes.push(i);
  const found = await Promise.all(probes.map(exists));
  const firstMissing = found.indexOf(false);
  if (firstMissing === 0) return 0;
  let lo = probes[firstMissing === -1 ? probes.length - 1 : firstMissing - 1];
  let hi = firstMissing === -1 ? max + 1 : probes[firstMissing];
  // Invariant: lo exists, hi does not (or is past max).
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await exists(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** The first `limit` demo users with their interests, how many are seeded and the last uid. */
export async function listDemoUsers(redis: RedisClient, keys: Keys, { limit = 12 }: { limit?: number } = {}): Promise<{ total: number; lastUid: string | null; users: UserProfile[] }> {
  const total = await countDemoUsers(redis, keys);
  const users = await Promise.all(Array.from({ length: Math.min(limit, total) }, (_, i) => getUser(redis, keys, demoUid(i + 1))));
  return { total, lastUid: total > 0 ? demoUid(total) : null, users: users.filter((u): u is UserProfile => u !== null) };
}
