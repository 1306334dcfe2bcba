/**
 * worker-host/valkey.ts sends script calls and the @upstash/redis requester's
 * commands straight to the socket with its own RESP encoder: values must
 * survive byte for byte (multi-byte UTF-8, empty strings, numbers), pipelines
 * must answer per command in order (errors included), against a real server.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomHex } from "../functions/envelope";
import { connectValkey, runScript, upstashOverValkey, type Connection } from "../worker-host/valkey";
import { startTestValkey, type TestValkey } from "./helpers/valkey";

let valkey: TestValkey;
let conn: Connection;

beforeAll(async () => {
  valkey = await startTestValkey();
  conn = connectValkey(valkey.url, { name: "valkey-client-test" });
});

afterAll(async () => {
  await conn?.quit();
  await valkey?.stop();
});

const k = (name: string) => `vc:${randomHex(4)}:${name}`;

describe("direct command encoding", () => {
  it("keeps multi-byte, empty and numeric values intact through the upstash client", async () => {
    const redis = upstashOverValkey(conn);
    const key = k("h");
    const text = "naïve café — 東京 🚀 \r\n$3\r\n";
    await redis.hset(key, { text, empty: "", n: 42 });
    expect(await conn.hget(key, "text")).toBe(text);
    expect(await conn.hget(key, "empty")).toBe("");
    expect(await conn.hget(key, "n")).toBe("42");
    const all = await redis.hgetall<Record<string, unknown>>(key);
    expect(all?.text).toBe(text);
  });

  it("answers a pipeline per command, in order, with errors in place", async () => {
    const redis = upstashOverValkey(conn);
    const key = k("s");
    const p = redis.pipeline();
    p.set(key, "v1");
    p.hset(key, { f: "x" }); // WRONGTYPE
    p.get(key);
    p.incr(k("n"));
    await expect(p.exec()).rejects.toThrow(/WRONGTYPE/);
    const q = redis.pipeline();
    q.set(key, "v2");
    q.get(key);
    q.incr(k("m"));
    expect(await q.exec()).toEqual(["OK", "v2", 1]);
  });

  it("sends the upstash client's calls of one tick in one socket write, answered in order", async () => {
    const c = connectValkey(valkey.url, { name: "valkey-client-cork" });
    try {
      await c.ping();
      const redis = upstashOverValkey(c);
      const key = k("tick");
      const socket = c.stream as unknown as { _writev: (chunks: unknown[], cb: unknown) => unknown; _write: (chunk: unknown, enc: unknown, cb: unknown) => unknown };
      const writes: number[] = [];
      const writev = socket._writev.bind(socket);
      const write = socket._write.bind(socket);
      socket._writev = (chunks: unknown[], cb: unknown) => (writes.push(chunks.length), writev(chunks, cb));
      socket._write = (chunk: unknown, enc: unknown, cb: unknown) => (writes.push(1), write(chunk, enc, cb));
      // Ten calls in one tick, as the envelopes of a batch make them side by side.
      const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => redis.rpush(key, `v${i}`)));
      expect(replies).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
      expect(writes).toEqual([10]);
      expect(await redis.lrange(key, 0, -1)).toEqual(Array.from({ length: 10 }, (_, i) => `v${i}`));
    } finally {
      await c.quit();
    }
  });

  it("runs scripts with large argument lists byte for byte", async () => {
    const stream = k("stream");
    await conn.xgroup("CREATE", stream, "g", "0", "MKSTREAM");
    const value = `{"t":"${"é".repeat(3000)}"}`;
    const id = (await conn.xadd(stream, "*", "e", value)) as string;
    await conn.xreadgroup("GROUP", "g", "c0", "COUNT", 1, "STREAMS", stream, ">");
    const args: Array<string | number> = ["g", "c1", 0, "0-0", 10];
    const [, claimed] = await runScript<[string, Array<[string, string[], number]>]>(conn, "reclaimIdle", [stream], args);
    expect(claimed.map(([cid, fields]) => [cid, fields])).toEqual([[id, ["e", value]]]);
  });
});
