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
      void discardRest(reader);
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

/** Reads a stream to its end, dropping every chunk (memory stays flat). */
async function discardRest(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<void> {
  try {
    for (;;) if ((await reader.read()).done) return;
  } catch {
    // the client went away, or the runtime cancelled the body once the answer was sent
  }
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
