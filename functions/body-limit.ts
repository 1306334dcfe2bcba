/**
 * Bounded request bodies, checked before a body is read: a declared
 * Content-Length over the limit is refused at once, and a body without one
 * (chunked) is read through a counting reader that keeps nothing past the limit
 * (the rest is dropped as it arrives). So a huge post costs at most the limit
 * in memory, on Node and Workers alike.
 * JSON nesting is bounded too, by a scan of the text (no recursion), so a deep
 * document answers 400 instead of overflowing a stack later.
 */
import type { MiddlewareHandler } from "hono";
import { settingsFor } from "./config";
import { apiError } from "./http";
import type { AppEnv } from "./redis";

/** Largest JSON nesting the public API accepts (objects and arrays). */
export const MAX_API_JSON_DEPTH = 64;
/** Largest JSON nesting of a stage request (envelopes carry the apps' payloads). */
export const MAX_STAGE_JSON_DEPTH = 256;

export type LimitedBody = { ok: true; bytes: Uint8Array } | { ok: false };

/**
 * Reads at most `maxBytes` of a request body. `{ ok: false }` when the declared
 * Content-Length is larger (nothing is read) or the stream passes the limit
 * (reading stops there and the rest is cancelled).
 */
export async function readBodyLimited(request: Request, maxBytes: number): Promise<LimitedBody> {
  const declared = request.headers.get("content-length");
  if (declared !== null && /^\d+$/.test(declared.trim()) && Number(declared.trim()) > maxBytes) return { ok: false };
  if (!request.body) return { ok: true, bytes: new Uint8Array(0) };
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      // Keep nothing more, but let the rest arrive and be dropped: cancelling would reset the
      // connection under a client still uploading, so it would never read the 413.
      // (answerAfterBody, the Workers entry's, waits for this before it ends the answer.)
      discarding.set(request, discardRest(reader));
      return { ok: false };
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return { ok: true, bytes: chunks[0] };
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return { ok: true, bytes };
}

/** Most of an unread request body dropped before the answer ends (past it the body is cancelled). */
export const DRAIN_MAX_BYTES = 64 * 1024 * 1024;
/** Longest the answer waits for the rest of a request body (a slow upload is cancelled then). */
export const DRAIN_MAX_MS = 15_000;

/** Requests whose body readBodyLimited stopped keeping, mapped to the read that drops the rest. */
const discarding = new WeakMap<Request, Promise<void>>();

/**
 * Reads a stream to its end, dropping every chunk (memory stays flat); past
 * `maxBytes` or `maxMs` it cancels the stream instead. Never rejects.
 */
async function discardRest(reader: ReadableStreamDefaultReader<Uint8Array>, { maxBytes = DRAIN_MAX_BYTES, maxMs = DRAIN_MAX_MS } = {}): Promise<void> {
  let dropped = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), maxMs)));
  try {
    for (;;) {
      const next = await Promise.race([reader.read(), late]);
      if (next === "late") break;
      if (next.done) return;
      dropped += next.value.byteLength;
      if (dropped > maxBytes) break;
    }
    await reader.cancel().catch(() => undefined);
  } catch {
    // the client went away, or the runtime cancelled the body once the answer was sent
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The Workers entry's answer to a request whose body the app did not read to
 * its end (a 413 on the declared length, an unsigned stage call, a 404, a
 * refused write). workerd's HTTP server closes the connection as soon as such
 * an answer is written; a client still uploading then meets a closed socket,
 * the kernel answers its next bytes with a reset, and that reset discards the
 * answer the client had not read yet: it sees ECONNRESET, never the 4xx.
 * So the answer's head and body go out at once (with its length, in workerd),
 * but the connection is released only after the rest of the request body has
 * been read and dropped (memory stays flat), up to DRAIN_MAX_BYTES /
 * DRAIN_MAX_MS; past them the body is cancelled (a client still sending then
 * gets a reset, as before).
 * Node's HTTP server drains unread bodies itself, so the Node host does not use this.
 * @example
 * const response = await app.fetch(request, env, ctx);
 * return answerAfterBody(request, response);
 */
export async function answerAfterBody(request: Request, response: Response): Promise<Response> {
  let rest = discarding.get(request);
  if (!rest && request.body && !request.bodyUsed) rest = discardRest(request.body.getReader());
  if (!rest) return response;
  if (!response.body) return rest.then(() => response);
  const headers = new Headers(response.headers);
  const init = { status: response.status, statusText: response.statusText, headers };
  const stream = (response.headers.get("content-type") ?? "").includes("text/event-stream");
  // workerd's FixedLengthStream keeps the declared length: the client has the whole answer at once and
  // can stop sending, while the connection stays open until the drain ends. Elsewhere (or for a
  // stream of unknown length) the answer is chunked and its last chunk waits for the drain.
  const Fixed = (globalThis as { FixedLengthStream?: new (length: number) => TransformStream<Uint8Array, Uint8Array> }).FixedLengthStream;
  if (Fixed && !stream) {
    const bytes = new Uint8Array(await response.arrayBuffer());
    const { readable, writable } = new Fixed(bytes.byteLength);
    const writer = writable.getWriter();
    void (async () => {
      try {
        await writer.write(bytes);
        await rest;
        await writer.close();
      } catch {
        await writer.abort().catch(() => undefined);
      }
    })();
    headers.set("content-length", String(bytes.byteLength));
    return new Response(readable, init);
  }
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const source = response.body;
  void (async () => {
    try {
      await source.pipeTo(writable, { preventClose: true });
      await rest;
      await writable.close();
    } catch {
      await writable.abort().catch(() => undefined);
    }
  })();
  headers.delete("content-length");
  return new Response(readable, init);
}

/**
 * True when the JSON text nests objects/arrays deeper than `max`. A linear
 * scan that skips strings; it does not validate (JSON.parse does that later).
 */
export function jsonDepthExceeds(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 92) i++; // backslash: skip the escaped character
      else if (ch === 34) inString = false;
      continue;
    }
    if (ch === 34) inString = true;
    else if (ch === 123 || ch === 91) {
      if (++depth > max) return true;
    } else if (ch === 125 || ch === 93) depth--;
  }
  return false;
}

/** The 413 answer naming the limit and the variable that sets it. */
export function payloadTooLarge(c: Parameters<typeof apiError>[0], maxBytes: number, variable: string) {
  return apiError(c, 413, "payload_too_large", `request body is larger than the limit of ${maxBytes} bytes (${variable})`);
}

const decoder = new TextDecoder();
const BODYLESS = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * Middleware of the public API: bounds every request body by MAX_BODY_BYTES
 * (413) and JSON nesting by MAX_API_JSON_DEPTH (400) before any route reads
 * it; the routes then read the text it cached (`c.req.json()`). Stage calls
 * (`/stages/*`) bound their own bodies, after the signature headers.
 */
export function limitApiBodies(): MiddlewareHandler<{ Bindings: AppEnv }> {
  return async function limitApiBodiesMiddleware(c, next) {
    if (BODYLESS.has(c.req.method) || new URL(c.req.url).pathname.startsWith("/stages/")) return next();
    const { settings } = settingsFor(c.env);
    const read = await readBodyLimited(c.req.raw, settings.MAX_BODY_BYTES);
    if (!read.ok) return payloadTooLarge(c, settings.MAX_BODY_BYTES, "MAX_BODY_BYTES");
    const text = decoder.decode(read.bytes);
    if (jsonDepthExceeds(text, MAX_API_JSON_DEPTH)) {
      return apiError(c, 400, "invalid_json", `JSON nests deeper than ${MAX_API_JSON_DEPTH} levels`);
    }
    // Hono's body readers (c.req.json(), the validator) take the cached text instead of the stream
    // (hono keeps promises there, although its type says string).
    (c.req.bodyCache as Record<string, unknown>).text = Promise.resolve(text);
    await next();
  };
}
