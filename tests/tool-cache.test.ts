/**
 * The tool cache (single flight, counters, errors not cached), the per-tool
 * token bucket and the RSS/Atom tool, against a real server.
 */
import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cachedTool, canonicalJson, CachedToolError } from "../functions/tools/cache";
import { tryTakeToken } from "../functions/tools/rate-limit";
import { fetchFeed, parseFeed } from "../functions/tools/rss";
import { startTestValkey, testKeys, type TestValkey } from "./helpers/valkey";

let v: TestValkey;
beforeAll(async () => {
  v = await startTestValkey();
});
afterAll(async () => {
  await v?.stop();
});

const counters = async (keys: ReturnType<typeof testKeys>) => {
  const h = await v.conn.hgetall(keys.counters());
  return { hits: Number(h.tool_cache_hits ?? 0), misses: Number(h.tool_cache_misses ?? 0) };
};

describe("cachedTool", () => {
  it("canonical JSON sorts keys at every level", () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 2 }], c: null } })).toBe('{"a":{"c":null,"d":[1,{"y":2,"z":1}]},"b":1}');
    expect(canonicalJson({ a: 1, b: 2 })).toBe(canonicalJson({ b: 2, a: 1 }));
  });

  it("50 concurrent identical calls invoke the tool once", async () => {
    const keys = testKeys();
    let calls = 0;
    const fn = async () => {
      calls++;
      await new Promise((r) => setTimeout(r, 150));
      return { answer: 42 };
    };
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => cachedTool(v.redis, keys, { tool: "slow", args: i % 2 ? { x: 1, y: [1, 2] } : { y: [1, 2], x: 1 }, ttlSeconds: 60, fn })),
    );
    expect(calls).toBe(1);
    expect(results.every((r) => r.value.answer === 42)).toBe(true);
    expect(results.filter((r) => !r.hit)).toHaveLength(1);
    expect(await counters(keys)).toEqual({ hits: 49, misses: 1 });
    // A later call is a plain hit.
    const later = await cachedTool(v.redis, keys, { tool: "slow", args: { x: 1, y: [1, 2] }, ttlSeconds: 60, fn });
    expect(later).toEqual({ value: { answer: 42 }, hit: true });
    expect(calls).toBe(1);
    // The entry has the tool's TTL.
    const [key] = await v.conn.keys(`${keys.prefix}:tool:cache:slow:*`);
    expect(await v.conn.ttl(key)).toBeGreaterThan(50);
  });

  it("different args are different entries", async () => {
    const keys = testKeys();
    let calls = 0;
    const fn = (n: number) => async () => {
      calls++;
      return n * 2;
    };
    const a = await cachedTool(v.redis, keys, { tool: "double", args: { n: 1 }, ttlSeconds: 60, fn: fn(1) });
    const b = await cachedTool(v.redis, keys, { tool: "double", args: { n: 2 }, ttlSeconds: 60, fn: fn(2) });
    expect([a.value, b.value, calls]).toEqual([2, 4, 2]);
  });

  it("does not cache errors as results; waiters retry after the holder fails", async () => {
    const keys = testKeys();
    let calls = 0;
    const flaky = async () => {
      calls++;
      await new Promise((r) => setTimeout(r, 50));
      if (calls === 1) throw new Error("upstream 503");
      return "ok";
    };
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => cachedTool(v.redis, keys, { tool: "flaky", args: {}, ttlSeconds: 60, fn: flaky })));
    const rejected = results.filter((r) => r.status === "rejected");
    expect(rejected).toHaveLength(1);
    expect(results.filter((r) => r.status === "fulfilled").every((r) => (r as PromiseFulfilledResult<{ value: string }>).value.value === "ok")).toBe(true);
    expect(calls).toBe(2);
  });

  it("remembers a failure briefly with the negative cache", async () => {
    const keys = testKeys();
    let calls = 0;
    const failing = async () => {
      calls++;
      throw new Error("bad gateway");
    };
    await expect(cachedTool(v.redis, keys, { tool: "neg", args: { u: 1 }, ttlSeconds: 60, negativeTtlSeconds: 5, fn: failing })).rejects.toThrow("bad gateway");
    await expect(cachedTool(v.redis, keys, { tool: "neg", args: { u: 1 }, ttlSeconds: 60, negativeTtlSeconds: 5, fn: failing })).rejects.toBeInstanceOf(CachedToolError);
    expect(calls).toBe(1);
  });

  it("never deadlocks on a lock whose holder died: waiters call the tool after the lock TTL", async () => {
    const keys = testKeys();
    const { sha256Hex } = await import("../functions/tools/cache");
    const hash = await sha256Hex(canonicalJson({ q: "x" }));
    await v.conn.set(keys.toolLock("orphan", hash), "dead-holder", "PX", 300);
    let calls = 0;
    const r = await cachedTool(v.redis, keys, { tool: "orphan", args: { q: "x" }, ttlSeconds: 60, lockMs: 300, fn: async () => ++calls });
    expect(r).toEqual({ value: 1, hit: false });
  });
});

describe("rate-limit.lua", () => {
  it("grants the burst, then asks the caller to wait for refill", async () => {
    const keys = testKeys();
    const limit = { burst: 3, perSecond: 10 };
    const now = 1_000_000;
    const got = [];
    for (let i = 0; i < 4; i++) got.push(await tryTakeToken(v.redis, keys, "llm", limit, now));
    expect(got.map((g) => g.granted)).toEqual([true, true, true, false]);
    expect(got[3].waitMs).toBe(100);
    expect((await tryTakeToken(v.redis, keys, "llm", limit, now + 100)).granted).toBe(true);
    expect((await tryTakeToken(v.redis, keys, "llm", limit, now + 100)).granted).toBe(false);
    // Tools have separate buckets.
    expect((await tryTakeToken(v.redis, keys, "rss", limit, now)).granted).toBe(true);
  });
});

const RSS = `<?xml version="1.0"?><rss version="2.0"><channel><title>Example News</title>
<item><title>Fed raises rates &amp; markets wobble</title><link>https://example.com/a?utm_source=x</link>
<description>&lt;p&gt;Stocks fell.&lt;/p&gt;</description><pubDate>Mon, 06 Sep 2021 16:45:00 +0000</pubDate></item>
<item><title>Second story</title><guid>https://example.com/b</guid><description>Body two</description></item>
</channel></rss>`;
const ATOM = `<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Atom Site</title>
<entry><title>Atom entry</title><link rel="alternate" href="https://example.org/e1"/><updated>2024-01-02T03:04:05Z</updated><summary>Summary here</summary></entry></feed>`;

describe("RSS/Atom tool", () => {
  it("parses RSS 2.0 and Atom", () => {
    const rss = parseFeed(RSS);
    expect(rss).toHaveLength(2);
    expect(rss[0]).toMatchObject({ title: "Fed raises rates & markets wobble", url: "https://example.com/a?utm_source=x", source: "Example News", publishedAt: "2021-09-06T16:45:00.000Z" });
    expect(rss[0].body).toContain("Stocks fell.");
    expect(rss[1]).toMatchObject({ title: "Second story", url: "https://example.com/b" });
    expect(parseFeed(ATOM)).toEqual([{ title: "Atom entry", body: "Summary here", url: "https://example.org/e1", source: "Atom Site", publishedAt: "2024-01-02T03:04:05.000Z" }]);
    expect(() => parseFeed("<html><body>nope</body></html>")).toThrow(/not an RSS or Atom/);
  });

  it("fetches a real HTTP feed through the tool cache", async () => {
    let requests = 0;
    const server: Server = createServer((_req, res) => {
      requests++;
      res.writeHead(200, { "content-type": "application/rss+xml" }).end(RSS);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/feed.xml`;
    const keys = testKeys();
    const opts = { ttlSeconds: 60, rate: { burst: 5, perSecond: 5 } };
    const first = await fetchFeed(v.redis, keys, url, opts);
    const second = await fetchFeed(v.redis, keys, url, opts);
    expect(first.articles).toHaveLength(2);
    expect(second).toEqual({ articles: first.articles, hit: true });
    expect(requests).toBe(1);
    await new Promise((r) => server.close(r));
  });
});
