/**
 * migrate-tags: data written under the old {p<i>} / {b<i>} tags on one server
 * is renamed to the spread tags, so users, feeds, runs and consumer groups
 * read back through the key builder after the upgrade; on a 3-master cluster
 * too (DUMP + RESTORE at the new name's master: groups, pending entries and
 * TTLs kept).
 */
import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomHex } from "../functions/envelope";
import { createKeys, spreadTag } from "../functions/keys";
import { fanOutArticle, fanOutToBucket } from "../functions/news/fan-out";
import { getUser, setInterests } from "../functions/news/users";
import { readRun, startRuns } from "../functions/runs";
import { migrateLegacyTags } from "../worker-host/tools/migrate-tags";
import { countingPipeline } from "./helpers/pipelines";
import { startTestValkey, type TestValkey } from "./helpers/valkey";
import { startTestCluster } from "./helpers/cluster";
import { keySlot } from "../functions/key-slot";
import { nodeArgs } from "./helpers/node-entry";

let v: TestValkey;
beforeAll(async () => {
  v = await startTestValkey();
});
afterAll(async () => {
  await v?.stop();
});

/** Renames every key of the new tags back to the old names: the data as the previous version left it. */
async function toLegacyNames(prefix: string, partitions: number, feedBuckets: number): Promise<number> {
  let n = 0;
  for (const [letter, count] of [["p", partitions], ["b", feedBuckets]] as const) {
    for (let i = 0; i < count; i++) {
      const now = `${prefix}:{${spreadTag(letter, i, count)}}:`;
      const old = `${prefix}:{${letter}${i}}:`;
      for (const key of await v.conn.keys(`${now}*`)) {
        await v.conn.rename(key, old + key.slice(now.length));
        n++;
      }
    }
  }
  return n;
}

describe("migrate-tags", () => {
  it("renames old-tag keys to the spread tags: users, feeds, runs and stream groups read back", async () => {
    const prefix = `m${randomHex(3)}`;
    const keys = createKeys({ prefix, partitions: 4, feedBuckets: 16 });
    const pipeline = countingPipeline();
    const uids = Array.from({ length: 40 }, (_, i) => `u${i}`);
    await Promise.all(uids.map((uid) => setInterests(v.redis, keys, uid, ["world"])));
    const { delivered } = await fanOutArticle(v.redis, keys, "1a", "world", { feedCap: 10, markerTtlSeconds: 60 });
    expect(delivered).toBe(40);
    const runIds = await startRuns(v.redis, [{ n: 1 }, { n: 2 }, { n: 3 }], { keys, pipeline });
    for (const p of keys.allPartitions) await v.conn.xgroup("CREATE", keys.stream("first", p), "first", "0", "MKSTREAM");
    const total = await toLegacyNames(prefix, 4, 16);
    expect(await getUser(v.redis, keys, "u1")).toBeNull(); // the new version does not see old names

    expect(await migrateLegacyTags(v.conn, { prefix, partitions: 4, feedBuckets: 16, dryRun: true })).toEqual({ renamed: total, conflicts: [] });
    expect(await getUser(v.redis, keys, "u1")).toBeNull();
    expect(await migrateLegacyTags(v.conn, { prefix, partitions: 4, feedBuckets: 16 })).toEqual({ renamed: total, conflicts: [] });
    expect(await getUser(v.redis, keys, "u1")).toEqual({ uid: "u1", interests: ["world"] });
    for (const uid of uids) expect(await v.conn.lrange(keys.feed(uid), 0, -1)).toEqual(["1a"]);
    for (const id of runIds) expect((await readRun(v.redis, keys, pipeline, id))?.status).toBe("running");
    for (const p of keys.allPartitions) expect(await v.conn.xinfo("GROUPS", keys.stream("first", p))).toHaveLength(1);
    // Nothing left to do the second time.
    expect(await migrateLegacyTags(v.conn, { prefix, partitions: 4, feedBuckets: 16 })).toEqual({ renamed: 0, conflicts: [] });
  });

  it("leaves a key alone when its new name exists already, and says so", async () => {
    const prefix = `m${randomHex(3)}`;
    const keys = createKeys({ prefix, partitions: 1, feedBuckets: 16 });
    const b = keys.bucketOf("u1");
    const old = `${prefix}:{b${b}}:user:u1`;
    await v.conn.hset(old, "interests", "world");
    await v.conn.hset(keys.user("u1"), "interests", "sports");
    expect(await migrateLegacyTags(v.conn, { prefix, partitions: 1, feedBuckets: 16 })).toEqual({ renamed: 0, conflicts: [old] });
    expect(await v.conn.hget(old, "interests")).toBe("world");
    expect(await v.conn.hget(keys.user("u1"), "interests")).toBe("sports");
  });

  it("on a 3-master cluster: moves old-tag keys to the spread tags (DUMP + RESTORE + DEL), groups, pending entries and TTLs kept", async () => {
    const t = await startTestCluster({ masters: 3 });
    try {
      const c = t.client;
      const prefix = `m${randomHex(3)}`;
      const keys = createKeys({ prefix, partitions: 12, feedBuckets: 24 });
      const pipeline = countingPipeline();
      const uids = Array.from({ length: 30 }, (_, i) => `u${i}`);
      await Promise.all(uids.map((uid) => setInterests(t.redis, keys, uid, ["world"])));
      for (const b of keys.allBuckets) await fanOutToBucketOnly(t.redis, keys, b);
      const runIds = await startRuns(t.redis, [{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }], { keys, pipeline, ttlSeconds: 3600 });
      for (const p of keys.allPartitions) await c.xgroup("CREATE", keys.stream("first", p), "first", "0", "MKSTREAM");
      // One entry read and not acknowledged: its pending entry must survive the move.
      const p0 = keys.partitionOf(runIds[0]);
      await c.xreadgroup("GROUP", "first", "host-a", "COUNT", 1, "STREAMS", keys.stream("first", p0), ">");
      // The data as the previous version left it (old tags), moved there the same way.
      let total = 0;
      for (const [letter, count] of [["p", 12], ["b", 24]] as const) {
        for (let i = 0; i < count; i++) {
          const now = `${prefix}:{${spreadTag(letter, i, count)}}:`;
          const old = `${prefix}:{${letter}${i}}:`;
          const owner = c.nodes("master").find((n) => `${n.options.host}:${n.options.port}` === c.slots[keySlot(`${now}x`)][0])!;
          for (const key of (await owner.keys(`${now}*`)) as string[]) {
            const [dump, pttl] = await Promise.all([c.dumpBuffer(key), c.pttl(key)]);
            await c.restore(old + key.slice(now.length), pttl > 0 ? pttl : 0, dump!);
            await c.del(key);
            total++;
          }
        }
      }
      expect(total).toBeGreaterThan(30);
      expect(await getUser(t.redis, keys, "u1")).toBeNull();
      // The tool as a user runs it: VALKEY_CLUSTER_NODES, the cluster defaults (12 partitions, 24 buckets).
      const dry = spawnSync(process.execPath, nodeArgs("worker-host/tools/migrate-tags.ts", ["--dry-run"]), { env: { ...process.env, VALKEY_URL: "", VALKEY_CLUSTER: "", PARTITIONS: "", FEED_BUCKETS: "", VALKEY_CLUSTER_NODES: t.cluster.seedList, KEY_PREFIX: prefix }, encoding: "utf8" });
      expect(dry.status, dry.stderr).toBe(0);
      expect(dry.stdout).toContain("cluster mode: 3 masters, 12 partitions, 24 feed buckets");
      expect(dry.stdout).toContain(`would rename ${total} key(s)`);
      expect(await migrateLegacyTags(c as never, { prefix, partitions: 12, feedBuckets: 24, dryRun: true })).toEqual({ renamed: total, conflicts: [] });
      expect(await migrateLegacyTags(c as never, { prefix, partitions: 12, feedBuckets: 24 })).toEqual({ renamed: total, conflicts: [] });
      expect(await getUser(t.redis, keys, "u1")).toEqual({ uid: "u1", interests: ["world"] });
      for (const uid of uids) expect(await c.lrange(keys.feed(uid), 0, -1)).toEqual(["1a"]);
      for (const id of runIds) expect((await readRun(t.redis, keys, pipeline, id))?.status).toBe("running");
      const ttl = await c.pttl(keys.run(runIds[0]));
      expect(ttl).toBeGreaterThan(3_000_000);
      for (const p of keys.allPartitions) expect(await c.xinfo("GROUPS", keys.stream("first", p))).toHaveLength(1);
      const pending = (await c.xpending(keys.stream("first", p0), "first")) as [number, ...unknown[]];
      expect(pending[0]).toBe(1);
      // Old names are gone from every master; a second run finds nothing.
      for (const n of c.nodes("master")) expect(((await n.keys(`${prefix}:{p*`)) as string[]).filter((k) => /:\{[pb]\d+\}:/.test(k))).toEqual([]);
      expect(await migrateLegacyTags(c as never, { prefix, partitions: 12, feedBuckets: 24 })).toEqual({ renamed: 0, conflicts: [] });
    } finally {
      await t.stop();
    }
  }, 60_000);
});

/** Delivers article 1a of topic world to one bucket's subscribers (every key of that bucket's tag). */
async function fanOutToBucketOnly(redis: Parameters<typeof fanOutToBucket>[0], keys: ReturnType<typeof createKeys>, bucket: number): Promise<void> {
  await fanOutToBucket(redis, keys, "1a", "world", bucket, { feedCap: 10, markerTtlSeconds: 60 });
}
