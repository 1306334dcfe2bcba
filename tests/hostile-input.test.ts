/**
 * Hostile input against a real server: body limits checked before the body
 * is read (413 naming the limit; an unsigned stage post is refused before its
 * body is pulled), JSON depth limits (400), stream ids as two unsigned 64-bit
 * numbers, no internal detail in a 500, HEAD on the SSE route opening no
 * stream, and the caps on concurrent SSE streams (503 per process, 429 per user).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { app, pipeline } from "../functions/news/index";
import { randomHex } from "../functions/envelope";
import { settingsFor } from "../functions/config";
import { openFeedStreams } from "../functions/news/feed-events";
import type { AppEnv } from "../functions/redis";
import { signStageRequest, parseSigningKeys } from "../functions/signing";
import { serveHttp, type HttpServer } from "../worker-host/server";
import { eventually, startTestValkey, type TestValkey } from "./helpers/valkey";
import { openSse, type SseConnection } from "./helpers/sse";

let v: TestValkey;
beforeAll(async () => {
  v = await startTestValkey();
});
afterAll(async () => {
  await v?.stop();
});

const SIGNING_KEYS = "k1:0123456789abcdef0123456789abcdef";
const envFor = (extra: Partial<AppEnv> = {}): AppEnv => ({ REDIS: v.redis, KEY_PREFIX: `h${randomHex(4)}`, STAGE_SIGNING_KEYS: SIGNING_KEYS, ...extra });
const post = (body: BodyInit, headers: Record<string, string> = {}): RequestInit => ({ method: "POST", headers: { "content-type": "application/json", ...headers }, body, duplex: "half" } as RequestInit);
type ErrorBody = { error: { code: string; message: string } };

/** A body of `total` bytes produced on demand, counting what the server pulled. */
function countingBody(total: number, chunk = 64 * 1024): { stream: ReadableStream<Uint8Array>; pulled: () => number } {
  let sent = 0;
  const block = new Uint8Array(chunk).fill(0x20);
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= total) return controller.close();
      const n = Math.min(chunk, total - sent);
      sent += n;
      controller.enqueue(n === chunk ? block : block.subarray(0, n));
    },
  });
  return { stream, pulled: () => sent };
}

const deep = (depth: number) => "[".repeat(depth) + "]".repeat(depth);

describe("body limits", () => {
  it("answers 413 naming the limit when Content-Length is over MAX_BODY_BYTES, without reading the body", async () => {
    const env = envFor({ MAX_BODY_BYTES: "4096" });
    const body = countingBody(10 * 1024 * 1024);
    const res = await app.request("/v1/runs", post(body.stream, { "content-length": String(10 * 1024 * 1024) }), env);
    expect(res.status).toBe(413);
    const { error } = (await res.json()) as ErrorBody;
    expect(error.code).toBe("payload_too_large");
    expect(error.message).toContain("4096 bytes");
    expect(error.message).toContain("MAX_BODY_BYTES");
    expect(body.pulled()).toBeLessThanOrEqual(64 * 1024);
  });

  it("answers a chunked body (no Content-Length) at the limit, then drops the rest as it arrives", async () => {
    const env = envFor();
    const total = 50 * 1024 * 1024;
    const body = countingBody(total);
    const res = await app.request("/v1/articles", post(body.stream), env);
    expect(res.status).toBe(413);
    // Answered at the limit (1 MiB by default), not after the 50 MiB.
    expect(body.pulled()).toBeLessThan(total / 2);
    expect(((await res.json()) as ErrorBody).error.message).toContain(`${1024 * 1024} bytes`);
    // The rest is read and dropped, so a client still uploading gets to read the 413 (no reset).
    await eventually(() => body.pulled() === total);
  });

  it("accepts a body under the limit and serves it to the route", async () => {
    const res = await app.request("/v1/runs", post(JSON.stringify({ payloads: [{ title: "t", body: "b" }] })), envFor());
    expect(res.status).toBe(202);
  });

  it("refuses an unsigned stage post before pulling its body, and bounds a signed one by STAGE_MAX_BODY_BYTES", async () => {
    const env = envFor({ STAGE_MAX_BODY_BYTES: "65536" });
    const unsigned = countingBody(400 * 1024 * 1024);
    const res = await app.request("/stages/fetcher", post(unsigned.stream), env);
    expect(res.status).toBe(401);
    expect(unsigned.pulled()).toBeLessThanOrEqual(64 * 1024);

    // Valid signature headers, body far over the limit: 413 once the limit is passed.
    const [key] = parseSigningKeys(SIGNING_KEYS);
    const headers = await signStageRequest(key, "POST", "/stages/fetcher", "{}");
    const big = countingBody(50 * 1024 * 1024);
    const tooBig = await app.request("/stages/fetcher", post(big.stream, headers), env);
    expect(tooBig.status).toBe(413);
    expect(big.pulled()).toBeLessThan(25 * 1024 * 1024);
    expect(((await tooBig.json()) as ErrorBody).error.message).toContain("STAGE_MAX_BODY_BYTES");
  });
});

describe("JSON depth", () => {
  it("answers 400 (not 500) for deeply nested JSON on the public API", async () => {
    for (const [path, body] of [
      ["/v1/runs", `{"payloads":[${deep(5000)}]}`],
      ["/v1/articles", `{"articles":${deep(100)}}`],
      ["/v1/dead-letters/redrive", `{"stage":"fetcher","ids":${deep(65)}}`],
    ] as const) {
      const res = await app.request(path, post(body), envFor());
      expect(res.status, path).toBe(400);
      expect(((await res.json()) as ErrorBody).error.message).toContain("deeper than 64");
    }
    // 64 levels are fine as far as depth goes (the schema then judges the payload).
    const ok = await app.request("/v1/runs", post(`{"payloads":[${deep(62)}]}`), envFor());
    expect(ok.status).toBe(202);
  });

  it("limits a signed stage request to 256 levels", async () => {
    const env = envFor();
    const [key] = parseSigningKeys(SIGNING_KEYS);
    const body = `{"envelopes":[{"payload":${deep(300)}}]}`;
    const headers = await signStageRequest(key, "POST", "/stages/fetcher", body);
    const res = await app.request("/stages/fetcher", post(body, headers), env);
    expect(res.status).toBe(400);
    expect(((await res.json()) as ErrorBody).error.message).toContain("deeper than 256");
  });
});

describe("stream ids and internal errors", () => {
  it("parses redrive ids as two unsigned 64-bit numbers", async () => {
    const env = envFor();
    for (const id of ["18446744073709551616-0", "0-18446744073709551616", "99999999999999999999999-1", "1-2-3", "-1-0", "1e3-0"]) {
      const res = await app.request("/v1/dead-letters/redrive", post(JSON.stringify({ stage: "fetcher", ids: [id] })), env);
      expect(res.status, id).toBe(400);
      expect(((await res.json()) as ErrorBody).error.code).toBe("validation_failed");
    }
    const max = await app.request("/v1/dead-letters/redrive", post(JSON.stringify({ stage: "fetcher", ids: ["18446744073709551615-18446744073709551615"] })), env);
    expect(max.status).toBe(200);
    expect(await max.json()).toEqual({ redriven: 0 });
  });

  it("answers an unexpected failure with a generic 500: no script SHA, line or stack", async () => {
    const secret = "ERR user_script:42: Script attempted to access nonexistent global variable f_0123456789abcdef0123456789abcdef01234567";
    const failing = new Proxy({}, { get: () => () => Promise.reject(new Error(secret)) });
    const logged: unknown[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => void logged.push(args);
    try {
      const res = await app.request("/v1/stats", {}, envFor({ REDIS: failing as AppEnv["REDIS"] }));
      expect(res.status).toBe(500);
      const text = await res.text();
      expect(text).not.toContain("user_script");
      expect(text).not.toContain("0123456789abcdef");
      expect(text).not.toMatch(/at .*\.ts:\d+/);
      expect(JSON.parse(text).error.code).toBe("internal");
    } finally {
      console.error = original;
    }
    // The details are in the log, under the reference the client got.
    expect(JSON.stringify(logged.map((l) => String((l as unknown[])[1])))).toContain("user_script:42");
  });
});

describe("SSE", () => {
  let server: HttpServer;
  let env: AppEnv;
  beforeAll(async () => {
    env = envFor({ SSE_POLL_MS: "100", SSE_MAX_STREAMS: "3", SSE_MAX_STREAMS_PER_USER: "2" });
    server = await serveHttp({ app, env, keys: settingsFor(env).keys, pipeline, port: 0, hostname: "127.0.0.1" });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("answers HEAD with the stream's headers and opens no stream (1,000 HEADs)", async () => {
    const before = openFeedStreams();
    const answers = new Map<number, number>();
    for (let i = 0; i < 1000; i += 50) {
      const batch = await Promise.all(
        Array.from({ length: 50 }, async (_, j) => {
          const res = await fetch(`${server.url}/v1/feeds/u${i + j}/events`, { method: "HEAD" });
          expect(res.headers.get("content-type")).toContain("text/event-stream");
          return res.status;
        }),
      );
      for (const s of batch) answers.set(s, (answers.get(s) ?? 0) + 1);
      expect(openFeedStreams()).toBe(before);
    }
    expect(answers.get(200)).toBe(1000);
    expect(openFeedStreams()).toBe(before);
  });

  it("caps streams per user (429) and per process (503), and frees the slots when clients leave", async () => {
    const open: SseConnection[] = [];
    try {
      open.push(await openSse(`${server.url}/v1/feeds/alice/events`));
      open.push(await openSse(`${server.url}/v1/feeds/alice/events`));
      expect(open.map((s) => s.status)).toEqual([200, 200]);
      const third = await fetch(`${server.url}/v1/feeds/alice/events`);
      expect(third.status).toBe(429);
      expect(((await third.json()) as ErrorBody).error.message).toContain("SSE_MAX_STREAMS_PER_USER");
      open.push(await openSse(`${server.url}/v1/feeds/bob/events`));
      expect(open[2].status).toBe(200);
      const fourth = await fetch(`${server.url}/v1/feeds/carol/events`);
      expect(fourth.status).toBe(503);
      expect(fourth.headers.get("retry-after")).toBe("5");
      expect(((await fourth.json()) as ErrorBody).error.code).toBe("too_many_streams");
    } finally {
      for (const s of open) s.close();
    }
    await eventually(() => openFeedStreams() === 0);
    const again = await openSse(`${server.url}/v1/feeds/carol/events`);
    expect(again.status).toBe(200);
    again.close();
  });
});
