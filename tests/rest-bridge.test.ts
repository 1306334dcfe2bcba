/**
 * The Upstash-compatible REST bridge, driven by the UNMODIFIED @upstash/redis
 * client (auto-pipelining on) from Node and from inside workerd, against a real
 * server started by this file.
 */
import { Redis } from "@upstash/redis";
import type { Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomHex } from "../functions/envelope";
import { ALLOWED_COMMANDS, startRestBridge, bridgeSettingsFromEnv, refusalOf, type RestBridge } from "../worker-host/rest-bridge";
import { startTestValkey, type TestValkey } from "./helpers/valkey";
import { bundleWorker, startWorker } from "./helpers/workerd";

let valkey: TestValkey;
let bridge: RestBridge;
let redis: Redis;
const token = randomHex(16);

beforeAll(async () => {
  valkey = await startTestValkey();
  bridge = await startRestBridge({ conn: valkey.connect(), token });
  redis = new Redis({ url: bridge.url, token, enableAutoPipelining: true });
});

afterAll(async () => {
  await bridge?.close();
  await valkey?.stop();
});

const k = (name: string) => `rb:${randomHex(4)}:${name}`;

/** Raw protocol call, for what the client cannot express. */
async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(`${bridge.url}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

describe("REST bridge with the unmodified @upstash/redis client (Node)", () => {
  it("strings: set/get/incr/mget, JSON values, expiry, missing key", async () => {
    const a = k("a");
    const b = k("b");
    const obj = k("obj");
    const [setA, setB, , incr, mget, missing] = await Promise.all([
      redis.set(a, "héllo ✓ 🚀"),
      redis.set(b, 41, { ex: 60 }),
      redis.set(obj, { nested: { list: [1, "two"] } }),
      redis.incr(b),
      redis.mget<string[]>(a, b),
      redis.get(k("none")),
    ]);
    expect(setA).toBe("OK");
    expect(setB).toBe("OK");
    expect(incr).toBe(42);
    expect(mget).toEqual(["héllo ✓ 🚀", 42]);
    expect(missing).toBeNull();
    expect(await redis.get(obj)).toEqual({ nested: { list: [1, "two"] } });
    expect(await redis.ttl(b)).toBeGreaterThan(0);
    expect(await valkey.conn.get(a)).toBe("héllo ✓ 🚀");
  });

  it("hashes: hset/hget/hgetall/hincrby", async () => {
    const h = k("h");
    expect(await redis.hset(h, { name: "ada", visits: 1 })).toBe(2);
    expect(await redis.hincrby(h, "visits", 2)).toBe(3);
    // Reads issued together travel as one /pipeline request (the client pipelines reads and writes separately).
    const [name, all] = await Promise.all([redis.hget(h, "name"), redis.hgetall(h)]);
    expect(name).toBe("ada");
    expect(all).toEqual({ name: "ada", visits: 3 });
    expect(await valkey.conn.hgetall(h)).toEqual({ name: "ada", visits: "3" });
  });

  it("streams: xadd/xrange/xlen", async () => {
    const s = k("s");
    const id1 = await redis.xadd(s, "*", { kind: "first", n: 1 });
    const id2 = await redis.xadd(s, "*", { kind: "second", n: 2 });
    expect(id1).toMatch(/^\d+-\d+$/);
    const range = await redis.xrange(s, "-", "+");
    expect(range).toEqual({ [id1]: { kind: "first", n: 1 }, [id2]: { kind: "second", n: 2 } });
    expect(await redis.xlen(s)).toBe(2);
    const raw = await valkey.conn.xrange(s, "-", "+");
    expect(raw.map(([id]) => id)).toEqual([id1, id2]);
  });

  it("sets: sadd/smembers/sismember/scard", async () => {
    const s = k("set");
    expect(await redis.sadd(s, "a", "b", "c")).toBe(3);
    const [members, isB, isZ, card] = await Promise.all([redis.smembers(s), redis.sismember(s, "b"), redis.sismember(s, "z"), redis.scard(s)]);
    expect([...members].sort()).toEqual(["a", "b", "c"]);
    expect(isB).toBe(1);
    expect(isZ).toBe(0);
    expect(card).toBe(3);
  });

  it("EVALSHA answers NOSCRIPT for an unknown script; createScript falls back to EVAL", async () => {
    await valkey.conn.script("FLUSH");
    const key = k("lua");
    await redis.set(key, "v");
    const source = `return {KEYS[1], ARGV[1], redis.call('GET', KEYS[1]), ${Date.now()}}`;
    const script = redis.createScript<[string, string, string, number]>(source);
    await expect(redis.evalsha(script.sha1, [key], ["x"])).rejects.toThrow(/NOSCRIPT/);
    const first = await script.exec([key], ["arg"]);
    expect(first.slice(0, 3)).toEqual([key, "arg", "v"]);
    // The EVAL fallback loaded it, so EVALSHA now works directly.
    const second = (await redis.evalsha(script.sha1, [key], ["again"])) as unknown[];
    expect(second.slice(0, 3)).toEqual([key, "again", "v"]);
  });

  it("pipeline with a failing command inside: per-entry error, the others run", async () => {
    const key = k("p");
    const p = redis.pipeline();
    p.set(key, "v");
    p.hget(key, "field");
    p.get(key);
    const results = await p.exec({ keepErrors: true });
    expect(results[0]).toEqual({ result: "OK", error: undefined });
    expect(results[1].error).toMatch(/WRONGTYPE/);
    expect(results[2].result).toBe("v");
    // Auto-pipelined calls: only the failing call rejects.
    const [ok, bad] = await Promise.allSettled([redis.get(key), redis.hget(key, "field")]);
    expect(ok).toEqual({ status: "fulfilled", value: "v" });
    expect(bad.status).toBe("rejected");
    expect(String((bad as PromiseRejectedResult).reason)).toMatch(/WRONGTYPE/);
    // The raw protocol shape.
    const raw = await post("/pipeline", [["GET", key], ["HGET", key, "f"]]);
    expect(raw.status).toBe(200);
    expect(raw.json).toEqual([{ result: "v" }, { error: expect.stringMatching(/^WRONGTYPE/) }]);
  });

  it("multi-exec runs atomically; a discarded transaction answers non-2xx and runs nothing", async () => {
    const counter = k("n");
    const results = await redis.multi().incr(counter).incrby(counter, 10).get(counter).exec();
    expect(results).toEqual([1, 11, 11]);
    const marker = k("marker");
    // GET without its key: rejected by the server while queueing, so EXEC aborts.
    const discarded = await post("/multi-exec", [["SET", marker, "1"], ["GET"]]);
    expect(discarded.status).toBe(400);
    expect(discarded.json.error).toMatch(/EXECABORT/);
    expect(await valkey.conn.exists(marker)).toBe(0);
    // An unknown command never reaches the server: the bridge refuses the whole transaction.
    const unknown = await post("/multi-exec", [["SET", marker, "1"], ["NOSUCHCOMMAND", "x"]]);
    expect(unknown.status).toBe(400);
    expect(unknown.json.error).toMatch(/NOSUCHCOMMAND is not allowed/);
    expect(await valkey.conn.exists(marker)).toBe(0);
    // A runtime error inside EXEC is per entry; the transaction still committed.
    const mixed = await post("/multi-exec", [["SET", marker, "1"], ["HGET", marker, "f"]]);
    expect(mixed.status).toBe(200);
    expect(mixed.json[0]).toEqual({ result: "OK" });
    expect(mixed.json[1].error).toMatch(/WRONGTYPE/);
  });

  it("binary-safe: bytes that are not valid UTF-8 round-trip byte for byte", async () => {
    const key = k("bin");
    const bytes = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0xa0, 0xa1, 0xf0, 0x28, 0x8c, 0x28]);
    // In through the path form (raw POST body), out through base64 encoding.
    const put = await fetch(`${bridge.url}/set/${encodeURIComponent(key)}`, { method: "POST", headers: { authorization: `Bearer ${token}` }, body: bytes });
    expect(await put.json()).toEqual({ result: "OK" });
    expect(Buffer.compare((await valkey.conn.getBuffer(key))!, bytes)).toBe(0);
    const got = await post("/", ["GET", key], { "upstash-encoding": "base64" });
    expect(Buffer.compare(Buffer.from(got.json.result, "base64"), bytes)).toBe(0);
    // Nested replies are encoded at every depth (XRANGE: [[id, [field, value]]]).
    const stream = k("binstream");
    await valkey.conn.xadd(stream, "*", "f", bytes);
    const range = await post("/", ["XRANGE", stream, "-", "+"], { "upstash-encoding": "base64" });
    expect(Buffer.compare(Buffer.from(range.json.result[0][1][1], "base64"), bytes)).toBe(0);
    expect(Buffer.from(range.json.result[0][1][0], "base64").toString()).toBe("f");
    // Through the client: every Unicode string (NUL, surrogate pairs, U+FFFF) round-trips.
    const unicode = k("uni");
    const text = "nul:\u0000 latin:ÿþ emoji:🚀 bmp-end:\uffff";
    await redis.set(unicode, text);
    expect(await redis.get(unicode)).toBe(text);
    expect(Buffer.compare((await valkey.conn.getBuffer(unicode))!, Buffer.from(text, "utf8"))).toBe(0);
  });

  it("without Upstash-Encoding, strings come back as UTF-8 text", async () => {
    const key = k("plain");
    await valkey.conn.set(key, "plain ✓");
    const got = await post("/", ["GET", key]);
    expect(got).toEqual({ status: 200, json: { result: "plain ✓" } });
    const path = await fetch(`${bridge.url}/get/${encodeURIComponent(key)}`, { headers: { authorization: `Bearer ${token}` } });
    expect(await path.json()).toEqual({ result: "plain ✓" });
  });

  it("wrong or missing token -> 401, nothing runs", async () => {
    const key = k("auth");
    const intruder = new Redis({ url: bridge.url, token: "wrong-token", retry: false });
    await expect(intruder.set(key, "x")).rejects.toThrow(/Unauthorized/);
    const none = await fetch(`${bridge.url}/`, { method: "POST", body: JSON.stringify(["SET", key, "x"]) });
    expect(none.status).toBe(401);
    expect(await valkey.conn.exists(key)).toBe(0);
  });

  it("refuses blocking and connection-state commands with a clear error", async () => {
    for (const command of [["BLPOP", "k", "0"], ["XREAD", "BLOCK", "0", "STREAMS", "s", "$"], ["SUBSCRIBE", "c"], ["SELECT", "1"], ["CLIENT", "KILL", "x"], ["MULTI"], ["HELLO", "3"]]) {
      const res = await post("/", command);
      expect(res.status).toBe(400);
      expect(res.json.error).toMatch(/blocking|connection state|bridge/);
    }
    expect(refusalOf(["XREAD", "COUNT", "1", "STREAMS", "s", "0"])).toBeUndefined();
    const piped = await post("/pipeline", [["PING"], ["BLPOP", "k", "0"]]);
    expect(piped.json).toEqual([{ result: "PONG" }, { error: expect.stringMatching(/blocking/) }]);
    const tx = await post("/multi-exec", [["PING"], ["WATCH", "k"]]);
    expect(tx.status).toBe(400);
  });

  it("runs only allow-listed data commands: every other command of the server is refused, and nothing it would do happens", async () => {
    const sentinel = k("sentinel");
    await valkey.conn.set(sentinel, "still here");
    const passBefore = await valkey.conn.call("CONFIG", "GET", "requirepass");
    // The ones an attacker holding the bridge token would try first, named so the list is explicit.
    const mustRefuse = [
      ["FLUSHALL"], ["FLUSHDB", "ASYNC"], ["CONFIG", "SET", "requirepass", "owned"], ["CONFIG", "GET", "*"], ["CONFIG", "REWRITE"],
      ["ACL", "SETUSER", "evil", "on", ">pw", "~*", "+@all"], ["ACL", "LIST"], ["KEYS", "*"], ["SWAPDB", "0", "1"], ["MOVE", sentinel, "1"],
      ["MIGRATE", "127.0.0.1", "1", sentinel, "0", "1000"], ["DEBUG", "SLEEP", "0"], ["SHUTDOWN", "NOSAVE"], ["MODULE", "LOAD", "/tmp/x.so"],
      ["SCRIPT", "FLUSH"], ["SCRIPT", "KILL"], ["FUNCTION", "FLUSH"], ["FUNCTION", "LOAD", "#!lua name=x\n"], ["FCALL", "f", "0"], ["MONITOR"],
      ["REPLICAOF", "127.0.0.1", "1"], ["SLAVEOF", "NO", "ONE"], ["BGSAVE"], ["SAVE"], ["BGREWRITEAOF"], ["LASTSAVE"], ["INFO"], ["CLIENT", "LIST"],
      ["OBJECT", "ENCODING", sentinel], ["DUMP", sentinel], ["RESTORE", k("r"), "0", "x"], ["SORT", sentinel], ["RANDOMKEY"], ["WAIT", "0", "0"],
      ["LATENCY", "RESET"], ["SLOWLOG", "RESET"], ["MEMORY", "DOCTOR"], ["CLUSTER", "INFO"], ["FAILOVER"], ["PSYNC", "?", "-1"], ["SYNC"], ["LOLWUT"],
      ["COPY", sentinel, k("c"), "DB", "1"], ["SELECT", "1"], ["AUTH", "x"], ["HELLO", "3", "AUTH", "default", "x"], ["PUBSUB", "CHANNELS"],
    ];
    for (const command of mustRefuse) {
      const res = await post("/", command);
      expect(res.status, command.join(" ")).toBe(400);
      expect(res.json.error, command.join(" ")).toMatch(/^ERR .*(not allowed through the REST bridge|blocking command|changes connection state)/);
    }
    // Every command the server knows that is not on the allow-list, sent with a harmless argument.
    // Every command and subcommand the server knows (COMMAND LIST names them as config|set) that is not allow-listed.
    const listed = ((await valkey.conn.call("COMMAND", "LIST")) as string[]).map((c) => c.toUpperCase().split("|"));
    const refused = listed.filter((parts) => refusalOf(parts) !== undefined);
    for (const parts of refused) {
      const res = await post("/", parts.length === 1 ? [parts[0], "x"] : parts);
      expect(res.status, parts.join(" ")).toBe(400);
      expect(res.json.error, parts.join(" ")).toMatch(/not allowed through the REST bridge|blocking command|changes connection state/);
    }
    const topLevel = listed.filter((p) => p.length === 1);
    const refusedTop = refused.filter((p) => p.length === 1);
    // The allow-list names only commands a client needs, each refused or run the same in a pipeline and a transaction.
    const piped = await post("/pipeline", [["FLUSHALL"], ["GET", sentinel], ["SCRIPT", "FLUSH"], ["SCRIPT", "EXISTS", "0000000000000000000000000000000000000000"]]);
    expect(piped.json).toEqual([{ error: expect.stringMatching(/not allowed/) }, { result: "still here" }, { error: expect.stringMatching(/SCRIPT FLUSH is not allowed/) }, { result: [0] }]);
    const tx = await post("/multi-exec", [["SET", sentinel, "changed"], ["FLUSHDB"]]);
    expect(tx.status).toBe(400);
    expect(await valkey.conn.get(sentinel)).toBe("still here");
    expect(await valkey.conn.call("CONFIG", "GET", "requirepass")).toEqual(passBefore);
    expect(await valkey.conn.call("ACL", "USERS")).toEqual(["default"]);
    console.log(`[rest-bridge] refuses ${refused.length} of the server's ${listed.length} commands and subcommands (${refusedTop.length} of ${topLevel.length} commands); ${ALLOWED_COMMANDS.size} allow-listed`);
    expect(refusedTop.length).toBeGreaterThan(50);
  });

  it("invalid bodies answer 400 with a reason", async () => {
    expect((await post("/", "{not json")).status).toBe(400);
    const empty = await post("/", []);
    expect(empty.status).toBe(400);
    expect(empty.json.error).toMatch(/non-empty/);
    expect((await post("/pipeline", [{ cmd: "GET" }])).status).toBe(400);
  });

  it("settings come from UPSTASH_REDIS_REST_URL/TOKEN; loopback only", async () => {
    expect(bridgeSettingsFromEnv({})).toMatchObject({ hostname: "127.0.0.1", port: 8079, generatedToken: true });
    expect(bridgeSettingsFromEnv({ UPSTASH_REDIS_REST_URL: "http://localhost:9999", UPSTASH_REDIS_REST_TOKEN: "t0k" })).toEqual({ hostname: "127.0.0.1", port: 9999, token: "t0k", generatedToken: false });
    expect(bridgeSettingsFromEnv({ UPSTASH_REDIS_REST_URL: "https://eu1-example.upstash.io" })).toBeNull();
    expect(() => startRestBridge({ conn: valkey.conn, token: "x", hostname: "0.0.0.0" })).toThrow(/loopback/);
  });
});

describe("REST bridge from inside workerd (Miniflare)", () => {
  let mf: Miniflare;
  beforeAll(async () => {
    const script = await bundleWorker("tests/fixtures/bridge-worker.ts");
    mf = await startWorker(script, { UPSTASH_REDIS_REST_URL: bridge.url, UPSTASH_REDIS_REST_TOKEN: token });
  });
  afterAll(async () => {
    await mf?.dispose();
  });

  it("the Workers build of @upstash/redis reaches Valkey through the bridge", async () => {
    await valkey.conn.script("FLUSH");
    const prefix = `wd${randomHex(4)}`;
    const res = await mf.dispatchFetch(`http://worker/?prefix=${prefix}`);
    const text = await res.text();
    expect(res.status, text).toBe(200);
    const body = JSON.parse(text);
    expect(body.got).toEqual({ value: "héllo wörld ✓ 🚀" });
    expect(body.hash).toEqual({ value: { a: 1, b: "two" } });
    expect(body.missing).toEqual({ value: null });
    expect(body.wrongType.error).toMatch(/WRONGTYPE/);
    expect(Object.values(body.stream)).toEqual([{ field: "value" }]);
    expect(body.tx).toEqual([1, 2, 2]);
    expect(body.scripted).toBe("lua:héllo wörld ✓ 🚀");
    expect(await valkey.conn.get(`${prefix}:s`)).toBe("héllo wörld ✓ 🚀");
  });
});
