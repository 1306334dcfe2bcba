/**
 * The news HTTP API through `app.request` (no port) against a real server:
 * ingest validation (400 with issues, 413 over 500 articles, token), users
 * and interests, feed pages and SSE replay reads, topics.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomHex } from "../functions/envelope";
import { app } from "../functions/news/index";
import { settingsFor } from "../functions/config";
import { readFeedSince } from "../functions/news/feeds";
import { fanOutArticle } from "../functions/news/fan-out";
import { storeArticle } from "../functions/news/articles";
import type { AppEnv } from "../functions/redis";
import { startTestValkey, type TestValkey } from "./helpers/valkey";

let v: TestValkey;
beforeAll(async () => {
  v = await startTestValkey();
});
afterAll(async () => {
  await v?.stop();
});

const envFor = (extra: Partial<AppEnv> = {}): AppEnv => ({ REDIS: v.redis, KEY_PREFIX: `a${randomHex(4)}`, ...extra });
const json = (method: string, body: unknown, headers: Record<string, string> = {}) => ({
  method,
  headers: { "content-type": "application/json", ...headers },
  body: typeof body === "string" ? body : JSON.stringify(body),
});
const article = (i: number) => ({ title: `Headline number ${i}`, body: `Body of article ${i}.` });

describe("POST /v1/articles", () => {
  it("answers 202 with one run per article, in order", async () => {
    const env = envFor();
    const res = await app.request("/v1/articles", json("POST", { articles: [article(1), { ...article(2), url: "https://example.com/x", id: "client-2", source: "wire", publishedAt: "2024-01-01T00:00:00Z" }] }), env);
    expect(res.status).toBe(202);
    const body = (await res.json()) as { accepted: number; runIds: string[] };
    expect(body.accepted).toBe(2);
    expect(body.runIds).toHaveLength(2);
    const { keys } = settingsFor(env);
    const run = await v.conn.hgetall(keys.run(body.runIds[1]));
    expect(run.status).toBe("running");
    expect(JSON.parse(run["step:ingest"])).toMatchObject({ status: "completed" });
    const [[, fields]] = await v.conn.xrange(keys.stream("fetcher", 0), "-", "+");
    expect(JSON.parse(fields[1]).payload).toMatchObject({ title: "Headline number 1" });
  });

  it("answers 400 with the issue list for invalid articles", async () => {
    const res = await app.request("/v1/articles", json("POST", { articles: [article(1), { body: "no title" }, { title: "", body: "x", url: "not a url" }] }), envFor());
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: { code: string; issues: Array<{ path: string }> } };
    expect(error.code).toBe("validation_failed");
    expect(error.issues.map((i) => i.path).sort()).toEqual(["articles.1.title", "articles.2.title", "articles.2.url"]);
  });

  it("answers 400 for an empty list or a body that is not JSON", async () => {
    expect((await app.request("/v1/articles", json("POST", { articles: [] }), envFor())).status).toBe(400);
    const bad = await app.request("/v1/articles", json("POST", "{not json"), envFor());
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).error).toBeDefined();
  });

  it("answers 413 with issues for 501 articles", async () => {
    const res = await app.request("/v1/articles", json("POST", { articles: Array.from({ length: 501 }, (_, i) => article(i)) }), envFor());
    expect(res.status).toBe(413);
    const { error } = (await res.json()) as { error: { issues: Array<{ path: string; code: string }> } };
    expect(error.issues[0]).toMatchObject({ path: "articles", code: "too_big" });
  });

  it("requires the API token when one is configured", async () => {
    const env = envFor({ API_TOKEN: "s3cret-token" });
    expect((await app.request("/v1/articles", json("POST", { articles: [article(1)] }), env)).status).toBe(401);
    const ok = await app.request("/v1/articles", json("POST", { articles: [article(1)] }, { authorization: "Bearer s3cret-token" }), env);
    expect(ok.status).toBe(202);
  });
});

describe("users", () => {
  it("PUT then GET a user's interests; 404 for unknown users", async () => {
    const env = envFor();
    const put = await app.request("/v1/users/alice", json("PUT", { interests: ["sports", "science"] }), env);
    expect(put.status).toBe(200);
    expect(await put.json()).toEqual({ uid: "alice", interests: ["sports", "science"] });
    expect(await (await app.request("/v1/users/alice", {}, env)).json()).toEqual({ uid: "alice", interests: ["sports", "science"] });
    expect((await app.request("/v1/users/nobody", {}, env)).status).toBe(404);
  });

  it("rejects unknown topics, duplicates, bad uids", async () => {
    const env = envFor();
    const unknown = await app.request("/v1/users/bob", json("PUT", { interests: ["sports", "cooking"] }), env);
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as any).error.issues[0].path).toBe("interests.1");
    expect((await app.request("/v1/users/bob", json("PUT", { interests: ["sports", "sports"] }), env)).status).toBe(400);
    expect((await app.request("/v1/users/bad:uid", json("PUT", { interests: [] }), env)).status).toBe(400);
    expect((await app.request(`/v1/users/${"x".repeat(65)}`, {}, env)).status).toBe(400);
  });
});

describe("feeds and topics", () => {
  async function feedWith(env: AppEnv, uid: string, n: number) {
    const { keys } = settingsFor(env);
    await app.request(`/v1/users/${uid}`, json("PUT", { interests: ["health"] }), env);
    for (let i = 1; i <= n; i++) {
      const id = (1000 + i).toString(36);
      await storeArticle(v.redis, keys, { id, runId: `r${i}`, title: `T${i}`, summary: `S${i}`, topic: "health", keywords: ["k"] }, "body", 600);
      await fanOutArticle(v.redis, keys, id, "health", { feedCap: 500, markerTtlSeconds: 600 });
    }
    return keys;
  }

  it("pages newest first with an opaque cursor that survives new items at the head", async () => {
    const env = envFor();
    const keys = await feedWith(env, "carol", 12);
    const p1 = (await (await app.request("/v1/feeds/carol?limit=5", {}, env)).json()) as any;
    expect(p1.items.map((i: any) => i.title)).toEqual(["T12", "T11", "T10", "T9", "T8"]);
    expect(p1.items[0]).toEqual({ id: (1012).toString(36), runId: "r12", title: "T12", summary: "S12", topic: "health", keywords: ["k"] });
    // A new delivery arrives between page requests: the next page does not repeat items.
    await storeArticle(v.redis, keys, { id: "zz1", runId: "r99", title: "T99", summary: "", topic: "health", keywords: [] }, "", 600);
    await fanOutArticle(v.redis, keys, "zz1", "health", { feedCap: 500, markerTtlSeconds: 600 });
    const p2 = (await (await app.request(`/v1/feeds/carol?limit=5&cursor=${p1.nextCursor}`, {}, env)).json()) as any;
    expect(p2.items.map((i: any) => i.title)).toEqual(["T7", "T6", "T5", "T4", "T3"]);
    const p3 = (await (await app.request(`/v1/feeds/carol?limit=5&cursor=${p2.nextCursor}`, {}, env)).json()) as any;
    expect(p3).toEqual({ items: expect.any(Array), nextCursor: null });
    expect(p3.items.map((i: any) => i.title)).toEqual(["T2", "T1"]);
  });

  it("validates limit and cursor; 404 for an unknown user", async () => {
    const env = envFor();
    await feedWith(env, "dan", 1);
    expect((await app.request("/v1/feeds/dan?limit=0", {}, env)).status).toBe(400);
    expect((await app.request("/v1/feeds/dan?limit=101", {}, env)).status).toBe(400);
    expect((await app.request("/v1/feeds/dan?cursor=garbage!", {}, env)).status).toBe(400);
    expect((await app.request("/v1/feeds/ghost", {}, env)).status).toBe(404);
  });

  it("readFeedSince returns what was delivered after a given id (SSE replay)", async () => {
    const env = envFor();
    const keys = await feedWith(env, "erin", 6);
    const after = (1003).toString(36);
    const items = await readFeedSince(v.redis, keys, "erin", after);
    expect(items.map((i) => i.title)).toEqual(["T6", "T5", "T4"]);
    expect(await readFeedSince(v.redis, keys, "erin", (1006).toString(36))).toEqual([]);
  });

  it("lists topics with subscriber and article counts, and a topic's items", async () => {
    const env = envFor();
    await feedWith(env, "fay", 0);
    await app.request("/v1/users/gus", json("PUT", { interests: ["health", "sports"] }), env);
    const { topics } = (await (await app.request("/v1/topics", {}, env)).json()) as any;
    expect(topics).toHaveLength(11);
    expect(topics.find((t: any) => t.name === "health")).toEqual({ name: "health", subscribers: 2, articles: 0 });
    expect(topics.find((t: any) => t.name === "sports").subscribers).toBe(1);
    expect((await app.request("/v1/topics/cooking", {}, env)).status).toBe(400);
    expect(await (await app.request("/v1/topics/health", {}, env)).json()).toEqual({ items: [] });
  });
});
