/**
 * migrate-tags: data written under the old {p<i>} / {b<i>} tags on one server
 * is renamed to the spread tags, so users, feeds, runs and consumer groups
 * read back through the key builder after the upgrade.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomHex } from "../functions/envelope";
import { createKeys, spreadTag } from "../functions/keys";
import { fanOutArticle } from "../functions/news/fan-out";
import { getUser, setInterests } from "../functions/news/users";
import { readRun, startRuns } from "../functions/runs";
import { migrateLegacyTags } from "../worker-host/tools/migrate-tags";
import { countingPipeline } from "./helpers/pipelines";
import { startTestValkey, type TestValkey } from "./helpers/valkey";

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
});
