/**
 * The news stages under redelivery, called like the worker-host calls them
 * (runStageBatch) against a real server: a redelivered fetcher keeps its
 * feed id and is not mistaken for a duplicate, a different run with the same
 * content or URL is skipped, and a redelivered fanout delivers nothing twice.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newEnvelope, randomHex, type Envelope } from "../functions/envelope";
import { pipeline } from "../functions/news/index";
import { settingsFor } from "../functions/config";
import { runStageBatch } from "../functions/stage-route";
import { setInterests } from "../functions/news/users";
import type { AppEnv } from "../functions/redis";
import { readFanoutDeliveries } from "../functions/stats";
import type { StageItemResult } from "../functions/envelope";
import { startTestValkey, type TestValkey } from "./helpers/valkey";

let v: TestValkey;
beforeAll(async () => {
  v = await startTestValkey();
});
afterAll(async () => {
  await v?.stop();
});

const envFor = (extra: Record<string, string> = {}): AppEnv => ({ REDIS: v.redis, KEY_PREFIX: `s${randomHex(4)}`, ...extra });
const ok = (r: StageItemResult) => {
  if (!r.ok) throw new Error(`stage failed: ${r.error.message}`);
  return r;
};
const redeliver = (e: Envelope): Envelope => ({ ...e, attempt: e.attempt + 1 });

describe("news stages under redelivery", () => {
  it("fetcher: same run again keeps its feed id; another run with the same content or URL is skipped", async () => {
    const env = envFor();
    const article = { title: "Markets &lt;b&gt;rally&lt;/b&gt; as rates hold", body: "Stocks rose\\on Tuesday #36;5 billion.", url: "https://Example.com/a?utm_source=x" };
    const first = newEnvelope("fetcher", article);
    const [a] = await runStageBatch(pipeline, "fetcher", env, [first]);
    const [again] = await runStageBatch(pipeline, "fetcher", env, [redeliver(first)]);
    const out = ok(a).outputs[0].payload as { feedId: string; title: string; body: string; url: string };
    expect(ok(again).status).toBe("completed");
    expect((ok(again).outputs[0].payload as { feedId: string }).feedId).toBe(out.feedId);
    expect(out.title).toBe("Markets rally as rates hold");
    expect(out.body).not.toMatch(/\\|#36;/);

    const [sameContent] = await runStageBatch(pipeline, "fetcher", env, [newEnvelope("fetcher", { ...article, url: "https://example.com/other" })]);
    expect(ok(sameContent).status).toBe("skipped");
    expect(ok(sameContent).result).toMatchObject({ reason: "duplicate-content", duplicateOf: first.runId });
    const [sameUrl] = await runStageBatch(pipeline, "fetcher", env, [newEnvelope("fetcher", { ...article, title: "A different title" })]);
    expect(ok(sameUrl).result).toMatchObject({ reason: "duplicate-url", duplicateOf: first.runId });
    expect(ok(sameUrl).outputs).toEqual([]);
  });

  it("concurrent deliveries of one article in different runs: exactly one passes", async () => {
    const env = envFor();
    const article = { title: "Same story twice", body: "Posted by two sources at once." };
    const results = await runStageBatch(pipeline, "fetcher", env, Array.from({ length: 10 }, () => newEnvelope("fetcher", article)));
    expect(results.map((r) => ok(r).status).sort()).toEqual(["completed", ...Array(9).fill("skipped")]);
  });

  it("enricher stores the article once; fanout redelivered delivers nothing twice", async () => {
    const env = envFor();
    const { keys } = settingsFor(env);
    await setInterests(v.redis, keys, "reader1", ["sports"]);
    await setInterests(v.redis, keys, "reader2", ["sports", "world"]);
    const classified = { feedId: "z9", title: "Cup final tonight", body: "The final kicks off at eight. Fans gather early.", topic: "sports", confidence: 0.9 };
    const enr = newEnvelope("enricher", classified);
    const [e1] = await runStageBatch(pipeline, "enricher", env, [enr]);
    const [e2] = await runStageBatch(pipeline, "enricher", env, [redeliver(enr)]);
    expect(ok(e1).outputs[0].payload).toEqual({ feedId: "z9", topic: "sports" });
    // Default ENRICH_CACHE=off: the enrichment is computed again, identically (no tool cache involved).
    expect(ok(e2).result).toEqual(ok(e1).result);
    expect(ok(e2).result).not.toHaveProperty("cacheHit");
    expect(await v.conn.hget(keys.counters(), "tool_cache_misses")).toBeNull();
    const stored = await v.conn.hgetall(keys.article("z9"));
    expect(JSON.parse(stored.item)).toMatchObject({ id: "z9", runId: enr.runId, title: "Cup final tonight", topic: "sports" });
    expect(stored.body).toBe(classified.body);

    const fo = newEnvelope("fanout", { feedId: "z9", topic: "sports" });
    const [f1] = await runStageBatch(pipeline, "fanout", env, [fo]);
    const [f2] = await runStageBatch(pipeline, "fanout", env, [redeliver(fo)]);
    expect(ok(f1).result).toMatchObject({ delivered: 2 });
    expect(ok(f2).result).toMatchObject({ delivered: 0 });
    expect(await v.conn.lrange(keys.feed("reader1"), 0, -1)).toEqual(["z9"]);
    expect(await v.conn.lrange(keys.feed("reader2"), 0, -1)).toEqual(["z9"]);
    expect(await v.conn.lrange(keys.topicArticles("sports"), 0, -1)).toEqual(["z9"]);
    expect(await readFanoutDeliveries(v.redis, keys)).toBe(2);
    expect(await v.conn.hget(keys.topicCounts(), "sports")).toBe("1");
  });

  it("with ENRICH_CACHE=on the enricher goes through the tool cache: a redelivery is a cache hit", async () => {
    const env = envFor({ ENRICH_CACHE: "on" });
    const { keys } = settingsFor(env);
    const classified = { feedId: "z8", title: "Cup final tonight", body: "The final kicks off at eight. Fans gather early.", topic: "sports", confidence: 0.9 };
    const enr = newEnvelope("enricher", classified);
    const [e1] = await runStageBatch(pipeline, "enricher", env, [enr]);
    const [e2] = await runStageBatch(pipeline, "enricher", env, [redeliver(enr)]);
    expect(ok(e1).result).toMatchObject({ cacheHit: false });
    expect(ok(e2).result).toMatchObject({ cacheHit: true });
    const { cacheHit: _a, ...first } = ok(e1).result as Record<string, unknown>;
    const { cacheHit: _b, ...second } = ok(e2).result as Record<string, unknown>;
    expect(second).toEqual(first);
    expect(await v.conn.hmget(keys.counters(), "tool_cache_hits", "tool_cache_misses")).toEqual(["1", "1"]);
  });

  it("dead-letters an invalid payload instead of guessing", async () => {
    const [r] = await runStageBatch(pipeline, "fanout", envFor(), [newEnvelope("fanout", { feedId: "NOT VALID", topic: "cooking" })]);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error.retryable).toBe(false);
  });
});
