/**
 * Signed stage invocations: HMAC-SHA-256 (WebCrypto, so it runs in Workers and
 * Node alike) over `"v2\n" + timestamp + "\n" + nonce + "\n" + METHOD + "\n" + path + "\n" + rawBody`.
 *
 * Headers:
 *   x-edgepipe-timestamp: <unix seconds>
 *   x-edgepipe-signature: v2=<hex hmac>,kid=<key id>,nonce=<32 hex>
 *
 * The nonce makes each request usable once: the stage route remembers it in
 * Valkey for the whole signature window (SET NX PX), so a captured request
 * replayed within its 5 minutes is refused (409) and runs nothing. v1
 * signatures (no nonce) are refused for that reason.
 *
 * `STAGE_SIGNING_KEYS` is `kid:secret` or `kidNew:secretNew,kidOld:secretOld`.
 * The worker-host signs with the first key; handlers accept any listed key, so a
 * rotation is: handlers get `new,old` -> host switches to `new,...` -> handlers drop `old`.
 * Until keys are configured, HTTP stage calls are refused: an unauthenticated
 * endpoint that runs handlers is never the default. In-process dispatch does
 * not come through here.
 */
import { randomHex } from "./envelope";
import type { AppEnv } from "./redis";

export const TIMESTAMP_HEADER = "x-edgepipe-timestamp";
export const SIGNATURE_HEADER = "x-edgepipe-signature";
/** Largest accepted clock difference between signer and verifier, either way. */
export const MAX_SKEW_SECONDS = 300;
/** How long a nonce is remembered: a request stays acceptable for MAX_SKEW_SECONDS either side of its timestamp. */
export const NONCE_TTL_MS = 2 * MAX_SKEW_SECONDS * 1000;
const NONCE = /^[0-9a-f]{32}$/;

export interface SigningKey {
  kid: string;
  secret: string;
}

export type SignatureVerdict = { ok: true; kid: string; nonce: string } | { ok: false; reason: string };

const KID = /^[A-Za-z0-9_.-]{1,32}$/;
const MIN_SECRET_LENGTH = 16;

/**
 * Parses `STAGE_SIGNING_KEYS` (`kid:secret[,kid:secret]`); throws with a readable
 * message when malformed. The first key is the one to sign with.
 */
export function parseSigningKeys(value: string): SigningKey[] {
  const keys = value
    .split(",")
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part) => {
      const at = part.indexOf(":");
      const kid = at > 0 ? part.slice(0, at) : "";
      const secret = at > 0 ? part.slice(at + 1) : "";
      if (!KID.test(kid)) throw new Error("STAGE_SIGNING_KEYS entries look like kid:secret (kid: 1-32 chars of A-Z a-z 0-9 _ . -)");
      if (secret.length < MIN_SECRET_LENGTH) throw new Error(`STAGE_SIGNING_KEYS secret of key ${kid} must be at least ${MIN_SECRET_LENGTH} characters`);
      return { kid, secret };
    });
  if (keys.length === 0) throw new Error("STAGE_SIGNING_KEYS is empty");
  if (keys.length > 2) throw new Error("STAGE_SIGNING_KEYS holds at most two keys (current and previous)");
  if (keys.length === 2 && keys[0].kid === keys[1].kid) throw new Error("STAGE_SIGNING_KEYS key ids must differ");
  return keys;
}

const encoder = new TextEncoder();
// Importing a key costs a little; the key material is configuration, not request state.
const importedKeys = new Map<string, Promise<CryptoKey>>();

function hmacKey(secret: string): Promise<CryptoKey> {
  let key = importedKeys.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]);
    if (importedKeys.size > 16) importedKeys.clear();
    importedKeys.set(secret, key);
  }
  return key;
}

function signedText(timestamp: string, nonce: string, method: string, path: string, body: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(`v2\n${timestamp}\n${nonce}\n${method.toUpperCase()}\n${path}\n${body}`);
}

function toHex(bytes: ArrayBuffer): string {
  let out = "";
  for (const b of new Uint8Array(bytes)) out += b.toString(16).padStart(2, "0");
  return out;
}

function fromHex(hex: string): Uint8Array<ArrayBuffer> | null {
  if (!/^[0-9a-f]{64}$/.test(hex)) return null;
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/**
 * Signs a stage request; returns the headers to send with it.
 * @example
 * const [key] = parseSigningKeys(process.env.STAGE_SIGNING_KEYS!);
 * const headers = await signStageRequest(key, "POST", "/stages/fetcher", body);
 */
export async function signStageRequest(key: SigningKey, method: string, path: string, body: string, now: number = Date.now(), nonce: string = randomHex(16)): Promise<Record<string, string>> {
  const timestamp = String(Math.floor(now / 1000));
  const mac = await crypto.subtle.sign("HMAC", await hmacKey(key.secret), signedText(timestamp, nonce, method, path, body));
  return { [TIMESTAMP_HEADER]: timestamp, [SIGNATURE_HEADER]: `v2=${toHex(mac)},kid=${key.kid},nonce=${nonce}` };
}

function parseSignatureHeader(value: string): { mac: string; kid: string; nonce: string } | { v1: true } | null {
  const fields = new Map<string, string>();
  for (const part of value.split(",")) {
    const at = part.indexOf("=");
    if (at <= 0) return null;
    fields.set(part.slice(0, at).trim(), part.slice(at + 1).trim());
  }
  const mac = fields.get("v2");
  const kid = fields.get("kid");
  const nonce = fields.get("nonce");
  if (!mac && fields.has("v1")) return { v1: true };
  return mac && kid && nonce ? { mac, kid, nonce } : null;
}

/**
 * Verifies a signed stage request against the keys in `env.STAGE_SIGNING_KEYS`.
 * `headers` are the request headers with lower-case names (Hono's `c.req.header()`).
 * The MAC check is WebCrypto's `verify`, which compares in constant time.
 */
export async function verifyStageSignature(
  env: AppEnv,
  method: string,
  path: string,
  body: string,
  headers: Record<string, string>,
  now: number = Date.now(),
): Promise<SignatureVerdict> {
  const pre = checkSignatureHeaders(env, headers, now);
  if (!pre.ok) return pre;
  const { key, mac, timestamp, nonce } = pre;
  const valid = await crypto.subtle.verify("HMAC", await hmacKey(key.secret), mac, signedText(timestamp, nonce, method, path, body));
  return valid ? { ok: true, kid: key.kid, nonce } : { ok: false, reason: "signature does not match (tampered body or path, or wrong secret)" };
}

/**
 * Everything of a signature that can be checked without the body: keys
 * configured, headers present and well-formed, timestamp fresh, key id known.
 * The stage route runs it before reading the body, so an unsigned or stale
 * request is refused without buffering a byte of it.
 */
export function checkSignatureHeaders(
  env: AppEnv,
  headers: Record<string, string>,
  now: number = Date.now(),
): { ok: true; key: SigningKey; mac: Uint8Array<ArrayBuffer>; timestamp: string; nonce: string } | { ok: false; reason: string } {
  if (!env.STAGE_SIGNING_KEYS) {
    return { ok: false, reason: "HTTP stage invocations need STAGE_SIGNING_KEYS configured (signed requests only)" };
  }
  let keys: SigningKey[];
  try {
    keys = parseSigningKeys(String(env.STAGE_SIGNING_KEYS));
  } catch (err) {
    return { ok: false, reason: `stage signing is misconfigured: ${(err as Error).message}` };
  }
  const timestamp = headers[TIMESTAMP_HEADER];
  const signature = headers[SIGNATURE_HEADER];
  if (!timestamp || !signature) return { ok: false, reason: `missing ${TIMESTAMP_HEADER} or ${SIGNATURE_HEADER} header` };
  if (!/^\d{1,12}$/.test(timestamp)) return { ok: false, reason: `${TIMESTAMP_HEADER} must be unix seconds` };
  const skew = Math.abs(Math.floor(now / 1000) - Number(timestamp));
  if (skew > MAX_SKEW_SECONDS) return { ok: false, reason: `stale signature: timestamp is ${skew} s away from now (max ${MAX_SKEW_SECONDS} s)` };
  const parsed = parseSignatureHeader(signature);
  if (parsed && "v1" in parsed) return { ok: false, reason: "v1 signatures carry no nonce and could be replayed; this handler takes v2 (upgrade the worker-host)" };
  if (!parsed) return { ok: false, reason: `${SIGNATURE_HEADER} must look like v2=<hex>,kid=<key id>,nonce=<32 hex>` };
  const key = keys.find((k) => k.kid === parsed.kid);
  if (!key) return { ok: false, reason: `unknown signing key id ${parsed.kid.slice(0, 32)}` };
  const mac = fromHex(parsed.mac);
  if (!mac) return { ok: false, reason: "signature must be 64 lowercase hex chars" };
  if (!NONCE.test(parsed.nonce)) return { ok: false, reason: "nonce must be 32 lowercase hex chars" };
  return { ok: true, key, mac, timestamp, nonce: parsed.nonce };
}
