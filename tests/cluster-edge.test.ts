/**
 * The edge stack (npm run dev's startHttpModeStack: handlers and API in
 * workerd, @upstash/redis over the REST bridge) on an embedded 3-master
 * cluster (VALKEY_CLUSTER=3, as `npm run dev -- --cluster 3`). The bridge,
 * driven by the UNMODIFIED @upstash/redis client, routes every command by its
 * key (no MOVED on any master), each /pipeline entry to its own master, and
 * answers a multi-key command or a /multi-exec across slots with CROSSSLOT as
 * Upstash answers a failed command (400, {"error"}); news runs end to end
 * through workerd with every feed exact.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { errors, Redis } from "@upstash/redis";
import { Cluster } from "iovalkey";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { settingsFor } from "../functions/config";
import { randomHex } from "../functions/envelope";
import { keySlot } from "../functions/key-slot";
import { NewsSettings } from "../functions/news/config";
import { generateDemoArticles } from "../functions/news/demo-feed";
import { pipeline } from "../functions/news/index";
import { seedDemoUsers, type UserProfile } from "../functions/news/users";
import type { RedisClient } from "../functions/redis";
import { loadConfig } from "../worker-host/config";
import { startHttpModeStack, type HttpModeStack } from "../worker-host/http-mode";
import { checkFeeds, deliveredArticles, waitForRuns } from "../worker-host/news/news-check";
import { newsWorkerBundle } from "./helpers/news-bundle";

const ARTICLES = 60;
const USERS = 40;
const CROSSSLOT = "CROSSSLOT Keys in request don't hash to the same slot";

const dir = mkdtempSync(join(tmpdir(), "edgepipe-cluster-edge-"));
const logs: string[] = [];
let stack: HttpModeStack;
let client: Cluster;
let redis: Redis;

beforeAll(async () => {
  const bundle = await newsWorkerBundle();
  const config = loadConfig(
    { VALKEY_CLUSTER: "3", VALKEY_DATA_DIR: join(dir, "valkey"), PORT: "0", HOST: "127.0.0.1", DEMO: "off", KEY_PREFIX: `ce${randomHex(3)}`, UPSTASH_REDIS_REST_URL: "http://127.0.0.1:0", BLOCK_MS: "200", BATCH_SIZE: "20", FEED_CAP: "100000" },
    { appSettings: NewsSettings },
  );
  stack = await startHttpModeStack({ config, pipeline, workerd: { kind: "miniflare", scriptPath: bundle.scriptPath }, log: (l) => logs.push(l) });
  client = new Cluster(stack.cluster!.startupNodes);
  client.on("error", () => {});
  redis = new Redis({ url: stack.restUrl, token: stack.restToken, enableAutoPipelining: true });
}, 150_000);

afterAll(async () => {
  await client?.quit().catch(() => client.disconnect());
  await stack?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Raw protocol call to the bridge. */
async function post(path: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${stack.restUrl}${path}`, { method: "POST", headers: { authorization: `Bearer ${stack.restToken}`, "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

/** Keys whose slots are owned by three different masters. */
function keysOnThreeMasters(prefix: string): string[] {
  const byMaster = new Map<string, string>();
  for (let i = 0; byMaster.size < 3 && i < 1000; i++) {
    const key = `${prefix}:${i}`;
    const owner = client.slots[keySlot(key)][0];
    if (!byMaster.has(owner)) byMaster.set(owner, key);
  }
  return [...byMaster.values()];
}

async function movedPerMaster(): Promise<number[]> {
  return Promise.all(client.nodes("master").map(async (n) => Number(/errorstat_MOVED:count=(\d+)/.exec(String(await n.info("errorstats")))?.[1] ?? 0)));
}

describe("the edge stack on an embedded 3-master cluster", () => {
  it("starts in cluster mode with the spreading defaults, the bridge in front of the cluster", () => {
    expect(stack.mode).toBe("cluster");
    expect(stack.cluster?.masters.length).toBe(3);
    expect(logs.some((l) => /cluster mode: 3 masters, 12 partitions, 24 feed buckets/.test(l))).toBe(true);
    expect(stack.bridge).toBeDefined();
  });

  it("routes each command to the master of its key: no MOVED on any master", async () => {
    await client.nodes("master")[0].info(); // the slot map is loaded
    await Promise.all(client.nodes("master").map((n) => n.config("RESETSTAT")));
    const keys = Array.from({ length: 60 }, (_, i) => `route:${randomHex(4)}:${i}`);
    await Promise.all(keys.map((k, i) => redis.set(k, i)));
    await Promise.all(keys.map((k) => redis.hset(`${k}:h`, { n: 1 })));
    const stream = `route:{s}:${randomHex(3)}`;
    await redis.xadd(stream, "*", { a: 1 });
    await post("/", ["XGROUP", "CREATE", stream, "g", "0"]);
    expect((await post("/", ["XINFO", "GROUPS", stream])).status).toBe(200);
    expect(await Promise.all(keys.map((k) => redis.get<number>(k)))).toEqual(keys.map((_, i) => i));
    // Every key is on its owner, and nothing was redirected.
    for (const k of keys.slice(0, 10)) expect(await client.get(k)).not.toBeNull();
    expect(await movedPerMaster()).toEqual([0, 0, 0]);
  });

  it("routes /pipeline entries per key; a cross-slot entry fails alone with CROSSSLOT", async () => {
    const [a, b, c] = keysOnThreeMasters(`pl${randomHex(3)}`);
    const replies = await redis.pipeline().set(a, "A").set(b, "B").set(c, "C").mget(a, b).get(c).exec({ keepErrors: true });
    expect(replies.map((r) => r.error ?? null)).toEqual([null, null, null, CROSSSLOT, null]);
    expect(replies[4].result).toBe("C");
    expect(await client.mget(a)).toEqual(["A"]);
    expect(await client.get(b)).toBe("B");
  });

  it("a multi-key command across slots: CROSSSLOT, surfaced by the client as against Upstash", async () => {
    const [a, b] = keysOnThreeMasters(`mk${randomHex(3)}`);
    // Sent alone (POST /), the client reports the 400 body; auto-pipelined, the /pipeline entry's error.
    const single = new Redis({ url: stack.restUrl, token: stack.restToken, enableAutoPipelining: false });
    const err = await single.mget(a, b).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(errors.UpstashError);
    expect((err as Error).message).toBe(`${CROSSSLOT}, command was: ${JSON.stringify(["mget", a, b])}`);
    const piped = await redis.mget(a, b).then(() => null, (e: unknown) => e);
    expect(piped).toBeInstanceOf(errors.UpstashError);
    expect((piped as Error).message).toBe(`Command failed: ${CROSSSLOT}`);
    expect(await post("/", ["DEL", a, b])).toEqual({ status: 400, json: { error: CROSSSLOT } });
    // One hash tag is one slot: fine.
    const t = randomHex(3);
    expect(await redis.mset({ [`{${t}}x`]: 1, [`{${t}}y`]: 2 })).toBe("OK");
    expect(await redis.mget<number[]>(`{${t}}x`, `{${t}}y`)).toEqual([1, 2]);
  });

  it("a /multi-exec across slots is refused whole with CROSSSLOT (nothing runs); in one slot it is atomic and byte-exact", async () => {
    const [a, b] = keysOnThreeMasters(`tx${randomHex(3)}`);
    const err = await redis.multi().set(a, 1).set(b, 2).exec().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(errors.UpstashError);
    expect((err as Error).message).toBe(`${CROSSSLOT}, command was: ${JSON.stringify([["set", a, 1], ["set", b, 2]])}`);
    expect(await post("/multi-exec", [["SET", a, "1"], ["SET", b, "2"]])).toEqual({ status: 400, json: { error: CROSSSLOT } });
    // In-process handlers (the host's requester) get the very same error.
    const inProcess = await stack.env.REDIS!.multi().set(a, 1).set(b, 2).exec().then(() => null, (e: unknown) => e);
    expect((inProcess as Error).message).toBe((err as Error).message);
    expect(inProcess).toBeInstanceOf(errors.UpstashError);
    expect([await client.exists(a), await client.exists(b)]).toEqual([0, 0]);
    const t = randomHex(3);
    expect(await redis.multi().set(`{${t}}n`, 5).incr(`{${t}}n`).get(`{${t}}n`).exec()).toEqual(["OK", 6, 6]);
    const bin = Buffer.from([0, 255, 1, 128]).toString("latin1");
    await client.set(`{${t}}bin`, Buffer.from([0, 255, 1, 128]));
    const res = await fetch(`${stack.restUrl}/multi-exec`, { method: "POST", headers: { authorization: `Bearer ${stack.restToken}`, "upstash-encoding": "base64" }, body: JSON.stringify([["GET", `{${t}}bin`], ["STRLEN", `{${t}}bin`]]) });
    expect(await res.json()).toEqual([{ result: Buffer.from(bin, "latin1").toString("base64") }, { result: 4 }]);
  });

  it("scripts: SCRIPT LOAD reaches every master, so EVALSHA runs on each; DBSIZE adds up the masters; SCAN walks them all", async () => {
    const sha = await redis.scriptLoad("return redis.call('INCR', KEYS[1])");
    const keys = keysOnThreeMasters(`sc${randomHex(3)}`);
    expect(await Promise.all(keys.map((k) => redis.evalsha(sha, [k], [])))).toEqual([1, 1, 1]);
    expect(await redis.scriptExists(sha, "0".repeat(40))).toEqual([1, 0]);
    const perMaster = await Promise.all(client.nodes("master").map((n) => n.dbsize()));
    const total = await redis.dbsize();
    expect(total).toBeGreaterThanOrEqual(perMaster.reduce((s, n) => s + n, 0) - 5);
    // SCAN walks every master: the client's own loop finds exactly the keys written, on all three.
    const tag = `scan${randomHex(3)}`;
    const written = Array.from({ length: 90 }, (_, i) => `${tag}:${i}`);
    await Promise.all(written.map((k) => redis.set(k, 1)));
    expect(new Set(written.map((k) => client.slots[keySlot(k)][0])).size).toBe(3);
    const found: string[] = [];
    let cursor: string | number = "0";
    let calls = 0;
    do {
      const [next, page]: [string, string[]] = await redis.scan(cursor, { match: `${tag}:*`, count: 20 });
      found.push(...page);
      cursor = next;
      calls++;
    } while (cursor !== "0" && calls < 500);
    expect(found.sort()).toEqual([...new Set(found)].sort());
    expect(new Set(found)).toEqual(new Set(written));
    expect((await post("/", ["SCAN", "not-a-cursor"])).status).toBe(400);
  });

  it("the allow-list holds on a cluster: FLUSHALL is refused alone, in a pipeline and in a transaction, and no master is flushed", async () => {
    const keep = `keep:${randomHex(4)}`;
    await redis.set(keep, "still here");
    const before = await Promise.all(client.nodes("master").map((n) => n.dbsize()));
    const refusal = "ERR command FLUSHALL is not allowed through the REST bridge (it runs data commands only)";
    expect(await post("/", ["FLUSHALL"])).toEqual({ status: 400, json: { error: refusal } });
    expect(await post("/pipeline", [["FLUSHALL"], ["GET", keep]])).toEqual({ status: 200, json: [{ error: refusal }, { result: "still here" }] });
    expect(await post("/multi-exec", [["GET", keep], ["FLUSHALL"]])).toEqual({ status: 400, json: { error: refusal } });
    expect((await post("/", ["CONFIG", "SET", "maxmemory", "1"])).status).toBe(400);
    expect(await redis.flushall().then(() => null, (e: Error) => e.message)).toMatch(/^ERR command FLUSHALL is not allowed/);
    expect(await client.get(keep)).toBe("still here");
    const after = await Promise.all(client.nodes("master").map((n) => n.dbsize()));
    after.forEach((n, i) => expect(n).toBeGreaterThanOrEqual(before[i]));
    expect(String(await client.nodes("master")[0].config("GET", "maxmemory"))).not.toContain(",1");
  });

  it(`news runs end to end through workerd over the bridge: ${ARTICLES} articles, ${USERS} users, every feed exact`, async () => {
    const keys = settingsFor(stack.env).keys;
    // Users are written through the bridge (set-interests per bucket), as a Worker would.
    const users: UserProfile[] = await seedDemoUsers(redis as unknown as RedisClient, keys, USERS);
    const articles = generateDemoArticles(ARTICLES, { seed: 13 }).map(({ intendedTopic: _t, id: _id, ...a }) => a);
    // Exact copies (no id, so runs of their own): the fetcher must skip them.
    const batch = [...articles, ...articles.slice(0, 2).map((a) => ({ ...a }))];
    const res = await fetch(`${stack.url}/v1/articles`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ articles: batch }) });
    expect(res.status).toBe(202);
    const { runIds } = (await res.json()) as { runIds: string[] };
    const statuses = await waitForRuns(stack.conn, keys, runIds, { timeoutMs: 90_000 });
    expect(statuses.filter((s) => s !== "completed" && s !== "skipped")).toEqual([]);
    // Of each article and its copy exactly one runs, the other is skipped: which one is the race of
    // 12 partitions read side by side (on one server's single partition it is always the copy).
    expect([0, 1].map((i) => [statuses[i], statuses[ARTICLES + i]].sort())).toEqual([["completed", "skipped"], ["completed", "skipped"]]);
    expect(statuses.filter((s) => s === "skipped")).toHaveLength(2);
    const delivered = await deliveredArticles(stack.conn, keys, runIds);
    expect(delivered.length).toBe(statuses.filter((s) => s === "completed").length);
    const check = await checkFeeds(stack.conn, keys, users, delivered, { feedCap: 100_000 });
    expect(check.problems).toEqual([]);
    expect(check.exact).toBe(USERS);
    expect(check.expectedDeliveries).toBeGreaterThan(USERS);
    // The handlers really ran in workerd, and the API answers from there.
    expect(stack.invoker.stats.envelopes).toBeGreaterThanOrEqual(runIds.length);
    expect(stack.invoker.stats.failures).toBe(0);
    const feed = (await (await fetch(`${stack.url}/v1/feeds/${users[0].uid}?limit=100`)).json()) as any;
    for (const item of feed.items) expect(users[0].interests).toContain(item.topic);
    const health = await fetch(`${stack.url}/health`);
    expect(health.status).toBe(200);
    const perMaster = await Promise.all(client.nodes("master").map((n) => n.dbsize()));
    expect(perMaster.every((n) => n > 0)).toBe(true);
    console.log(`[cluster-edge] ${delivered.length} articles completed, ${check.expectedDeliveries} feed entries over ${USERS} users, ${check.exact} exact; keys per master ${perMaster.join(" / ")}`);
  });
});
