/**
 * fan-out.lua and set-interests.lua against a real server: only subscribers
 * of the topic get the article, redelivery delivers nothing twice, feeds are
 * trimmed to the cap, notifications name the receivers; interests and
 * subscriber sets change together.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createKeys, type Keys } from "../functions/keys";
import { randomHex } from "../functions/envelope";
import { fanOutArticle, fanOutToBucket } from "../functions/news/fan-out";
import { TOPICS } from "../functions/news/classify";
import { demoInterests, getUser, seedDemoUsers, setInterests } from "../functions/news/users";
import { startTestValkey, type TestValkey } from "./helpers/valkey";

let v: TestValkey;
beforeAll(async () => {
  v = await startTestValkey();
});
afterAll(async () => {
  await v?.stop();
});

const keysFor = (feedBuckets = 4): Keys => createKeys({ prefix: `t${randomHex(4)}`, feedBuckets });
const opts = { feedCap: 500, markerTtlSeconds: 600 };
const feedOf = async (keys: Keys, uid: string) => (await v.conn.lrange(keys.feed(uid), 0, -1));

describe("fan-out.lua", () => {
  it("delivers only to subscribers of the article's topic, once per feed", async () => {
    const keys = keysFor();
    await setInterests(v.redis, keys, "alice", ["sports", "world"]);
    await setInterests(v.redis, keys, "bob", ["sports"]);
    await setInterests(v.redis, keys, "carol", ["science"]);
    const res = await fanOutArticle(v.redis, keys, "a1", "sports", opts);
    expect(res.delivered).toBe(2);
    expect(await feedOf(keys, "alice")).toEqual(["a1"]);
    expect(await feedOf(keys, "bob")).toEqual(["a1"]);
    expect(await feedOf(keys, "carol")).toEqual([]);
  });

  it("is idempotent under redelivery: a repeated (article, bucket) call delivers nothing", async () => {
    const keys = keysFor();
    const users = Array.from({ length: 40 }, (_, i) => `user${i}`);
    for (const uid of users) await setInterests(v.redis, keys, uid, ["technology"]);
    const first = await fanOutArticle(v.redis, keys, "zz", "technology", opts);
    expect(first.delivered).toBe(40);
    expect(first.buckets).toBeGreaterThan(1);
    const again = await Promise.all([fanOutArticle(v.redis, keys, "zz", "technology", opts), fanOutArticle(v.redis, keys, "zz", "technology", opts)]);
    expect(again.map((r) => r.delivered)).toEqual([0, 0]);
    for (const uid of users) expect(await feedOf(keys, uid)).toEqual(["zz"]);
  });

  it("trims every feed to its cap, newest first", async () => {
    const keys = keysFor(1);
    await setInterests(v.redis, keys, "dave", ["health"]);
    for (let i = 1; i <= 12; i++) await fanOutToBucket(v.redis, keys, i.toString(36), "health", 0, { feedCap: 5, markerTtlSeconds: 600 });
    expect(await feedOf(keys, "dave")).toEqual(["c", "b", "a", "9", "8"]);
  });

  it("publishes '<feedId> <topic> <uids>' per bucket for live clients", async () => {
    const keys = keysFor(1);
    await setInterests(v.redis, keys, "erin", ["climate"]);
    await setInterests(v.redis, keys, "frank", ["climate"]);
    const sub = v.connect();
    const messages: string[] = [];
    sub.on("message", (_channel, message) => messages.push(message));
    await sub.subscribe(keys.feedChannel(0));
    await fanOutArticle(v.redis, keys, "q1", "climate", opts);
    await fanOutArticle(v.redis, keys, "q1", "climate", opts); // redelivery: no second message
    await fanOutArticle(v.redis, keys, "q2", "sports", opts); // nobody follows sports: no message
    for (let i = 0; i < 50 && messages.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 50));
    expect(messages).toHaveLength(1);
    const [feedId, topic, uids] = messages[0].split(" ");
    expect({ feedId, topic, uids: uids.split(",").sort() }).toEqual({ feedId: "q1", topic: "climate", uids: ["erin", "frank"] });
    await sub.quit();
  });

  it("touches no bucket without subscribers (no marker is left behind)", async () => {
    const keys = keysFor(4);
    const res = await fanOutArticle(v.redis, keys, "e1", "education", opts);
    expect(res).toEqual({ buckets: 0, delivered: 0 });
    for (const b of keys.allBuckets) expect(await v.conn.exists(keys.fanoutDone("e1", b))).toBe(0);
  });
});

describe("set-interests.lua", () => {
  it("moves the user between subscriber sets and the profile in one step", async () => {
    const keys = keysFor();
    const b = keys.bucketOf("gina");
    await setInterests(v.redis, keys, "gina", ["sports", "world", "finance"]);
    await setInterests(v.redis, keys, "gina", ["finance", "science"]);
    for (const t of TOPICS) {
      const member = await v.conn.sismember(keys.subscribers(t, b), "gina");
      expect([t, member]).toEqual([t, ["finance", "science"].includes(t) ? 1 : 0]);
    }
    expect(await getUser(v.redis, keys, "gina")).toEqual({ uid: "gina", interests: ["finance", "science"] });
    await setInterests(v.redis, keys, "gina", []);
    expect(await getUser(v.redis, keys, "gina")).toEqual({ uid: "gina", interests: [] });
    expect(await getUser(v.redis, keys, "nobody")).toBeNull();
  });

  it("never exposes a half-updated user to a concurrent fan-out", async () => {
    const keys = keysFor(1);
    // Flip a user between two disjoint interest sets while reading both sets in MULTI:
    // the user is always in exactly one of them.
    await setInterests(v.redis, keys, "hank", ["world"]);
    const flips = Array.from({ length: 200 }, (_, i) => setInterests(v.redis, keys, "hank", i % 2 ? ["sports"] : ["world"]));
    const reader = v.connect();
    const observations: number[] = [];
    const reads = (async () => {
      for (let i = 0; i < 100; i++) {
        const r = await reader.multi().sismember(keys.subscribers("sports", 0), "hank").sismember(keys.subscribers("world", 0), "hank").exec();
        observations.push(Number(r![0][1]) + Number(r![1][1]));
      }
    })();
    await Promise.all([...flips, reads]);
    expect(observations).toHaveLength(100);
    expect(observations.every((n) => n === 1)).toBe(true);
    expect(await getUser(v.redis, keys, "hank")).toEqual({ uid: "hank", interests: ["sports"] });
  });

  it("seeds deterministic demo users with 2-4 interests", async () => {
    const keys = keysFor();
    const users = await seedDemoUsers(v.redis, keys, 30);
    expect(users).toHaveLength(30);
    expect(users[0].uid).toBe("u0001");
    for (const u of users) {
      expect(u.interests.length).toBeGreaterThanOrEqual(2);
      expect(u.interests.length).toBeLessThanOrEqual(4);
      expect(new Set(u.interests).size).toBe(u.interests.length);
    }
    expect(users[6].interests).toEqual(demoInterests(7));
    expect(await getUser(v.redis, keys, "u0007")).toEqual({ uid: "u0007", interests: demoInterests(7) });
  });
});
