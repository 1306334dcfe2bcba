/**
 * `npm run fuzz`: property-based fuzzing (fast-check) of every route of the
 * news app, under Node (`npm start`'s runtime, API_TOKEN set) and under
 * workerd (the deploy bundle in Miniflare, reaching Valkey through the REST
 * bridge), against a server of its own. Random and malicious path parameters,
 * queries, headers and bodies (path traversal, `{`/`}` hash-tag injection,
 * `*`, CR/LF, NUL, lone surrogates, huge strings, deep JSON, wrong content
 * types, forged signatures). The oracle: never a 5xx, every 4xx is JSON
 * `{ error: { code, message } }`, no request hangs, the process does not
 * crash, and afterwards SCAN finds no key outside the project's namespaces.
 *
 *   npm run fuzz -- --seed 42 --cases 500 [--runtime node|workerd|both] [--rss] [--only REGEX] [--dump FILE]
 *   npm run fuzz -- --replay FILE --runtime workerd   (each dumped case alone, three times)
 *
 * `--rss` also sends 400 MB unsigned (and forged-signature) stage posts to
 * each runtime and reports the server's RSS while they stream.
 */
import { createHmac, randomBytes } from "node:crypto";
import { request as httpRequest } from "node:http";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import fc from "fast-check";
import { newEnvelope } from "../../../functions/envelope";
import { app, pipeline } from "../../../functions/news/index";
import { NewsSettings } from "../../../functions/news/config";
import { SIGNATURE_HEADER, signStageRequest, TIMESTAMP_HEADER, type SigningKey } from "../../../functions/signing";
import { loadConfig } from "../../config";
import { startHttpModeStack } from "../../http-mode";
import { startRuntime } from "../../runtime";
import { connectValkey, closeConnection } from "../../valkey";
import { findServerBinary, launchValkey } from "../../valkey-launcher";
import { buildWorkerBundle } from "../../worker-bundle";

export const FUZZ_TOKEN = "fuzz-api-token-0123";
const SIGNING_KEY: SigningKey = { kid: "fuzz", secret: "fuzz-signing-secret-0123456789" };

/** Strings an attacker tries in ids, fields and headers. */
const HOSTILE = [
  "../../etc/passwd", "..%2f..%2fetc%2fpasswd", "%2e%2e%2f", "/", "\\..\\", "..", ".",
  "{p0}", "}{", "{b1}:feed:x", "ep:{p0}:run:x", "}", "{", "*", "?", "[a-z]", "\r\nSET x 1\r\n", "\n", "\r", "\0", "a\0b",
  "\ud800", "\udfff", "x\ud83dy", "😀", "ﾟ", "\u202e", "' OR 1=1 --", "<script>", "${jndi:ldap://x}", "%00", "%", "%zz",
  "18446744073709551616-0", "18446744073709551615-18446744073709551615", "-1-0", "0-0", "1e999", "NaN", "-0", "null", "true",
  "__proto__", "constructor", "prototype", "", " ", "u0001", "fetcher", "sports", "a".repeat(65), "x".repeat(10_000),
];
const CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", "", "application/json; charset=utf-16", "APPLICATION/JSON"];

export interface FuzzCase {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
  /** Sign the (stage) request with the real key (so it gets past the signature). */
  sign?: boolean;
}

/**
 * fast-check's `unit: "binary"` (any code point but a surrogate), built the same way (a nat over
 * the 1,112,064 code points, below U+D800 as is, above it shifted past the surrogates), so a seed
 * draws the same strings. Only the unmapper differs: fast-check's builds a Map of all 1.1 million
 * code points the first time `fc.string` asks it (its "dangerous strings" slices) when this module
 * is imported (its import took 2.6 s of CPU, now 1.2 s); this one computes the index.
 */
const BINARY_UNIT = fc.nat({ max: 0x10ffff - 0x800 }).map(
  (index) => String.fromCodePoint(index < 0xd800 ? index : index + 0x800),
  (value) => {
    const code = typeof value === "string" ? value.codePointAt(0) : undefined;
    if (code === undefined || String.fromCodePoint(code) !== value || (code >= 0xd800 && code <= 0xdfff)) throw new Error("not one code point of the binary unit");
    return code < 0xd800 ? code : code - 0x800;
  },
);

const hostileString = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...HOSTILE) },
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: BINARY_UNIT, maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.constantFrom("{", "}", "*", ":", "/", "\r", "\n", "\0", "\ud800", "%", "."), maxLength: 20 }) },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 200_000 }).map((n) => "y".repeat(n)) },
);

/** One path segment as a client would put it on the wire (lone surrogates as invalid UTF-8 bytes). */
function segment(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return s.replace(/[\ud800-\udfff]/g, "%ED%A0%80").replace(/[^A-Za-z0-9%_.~-]/g, (ch) => {
      try {
        return encodeURIComponent(ch);
      } catch {
        return "%ED%A0%80";
      }
    });
  }
}

const deepJson = fc.integer({ min: 30, max: 6000 }).chain((n) => fc.constantFrom("[", "{\"a\":").map((open) => open.repeat(n) + (open === "[" ? "1" + "]".repeat(n) : "1" + "}".repeat(n))));

/** A JSON-ish value with hostile strings at any depth. */
const hostileJson: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    hostileString,
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value"), { maxLength: 5 }),
    fc.dictionary(fc.oneof(hostileString, fc.constantFrom("articles", "payloads", "stage", "ids", "interests", "envelopes", "title", "body", "url", "jsonrpc", "method", "params")), tie("value"), { maxKeys: 5 }),
  ),
})).value;

/** Bodies shaped like each route's input, with hostile fields, so validation (not just JSON parsing) is exercised. */
const shapedBody = fc.oneof(
  fc.record({ articles: fc.array(fc.record({ title: hostileString, body: hostileString, url: hostileString, id: hostileString, source: hostileString, publishedAt: hostileString }, { requiredKeys: ["title", "body"] }), { maxLength: 4 }) }),
  fc.record({ payloads: fc.array(hostileJson, { minLength: 1, maxLength: 4 }), stage: fc.oneof(hostileString, fc.constantFrom(...pipeline.stages.keys())) }, { requiredKeys: ["payloads"] }),
  fc.record({ stage: fc.oneof(hostileString, fc.constantFrom(...pipeline.stages.keys())), ids: fc.array(hostileString, { maxLength: 4 }) }, { requiredKeys: ["stage"] }),
  fc.record({ interests: fc.array(fc.oneof(hostileString, fc.constantFrom("sports", "tech", "world")), { maxLength: 12 }) }),
  fc.record({ envelopes: fc.array(fc.oneof(hostileJson, fc.constantFrom(...pipeline.stages.keys()).chain((s) => hostileJson.map((p) => ({ ...newEnvelope(s, p), runId: "fz" })))), { maxLength: 3 }) }),
  fc.record({ jsonrpc: fc.constant("2.0"), id: fc.integer(), method: fc.constantFrom("initialize", "tools/list", "tools/call", "x"), params: hostileJson }),
  fc.record({ fromStep: hostileString, payload: hostileJson, data: hostileJson }),
);

const body = fc.oneof(
  { weight: 4, arbitrary: shapedBody.map((v) => JSON.stringify(v)) },
  { weight: 2, arbitrary: hostileJson.map((v) => JSON.stringify(v) ?? "null") },
  { weight: 1, arbitrary: deepJson },
  { weight: 1, arbitrary: hostileString },
  { weight: 1, arbitrary: fc.constantFrom("{", "[", "{\"a\":", "\"", "nul", "{\"articles\":[{\"title\":\"\\ud800\",\"body\":\"x\"}]}") },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }).map(megabyteBody) },
);

const megabyteBodies = new Map<number, string>();
/** The megabyte bodies as UTF-8, for fetchSender. */
const encodedMegabyteBodies = new Map<string, Uint8Array<ArrayBuffer>>();
/** `{"payloads":["zzz…"]}` of `mb` MB: the same three strings each time, built once (JSON.stringify of 3 MB takes 90 ms). */
function megabyteBody(mb: number): string {
  let text = megabyteBodies.get(mb);
  if (text === undefined) {
    text = JSON.stringify({ payloads: ["z".repeat(mb * 1024 * 1024)] });
    megabyteBodies.set(mb, text);
    encodedMegabyteBodies.set(text, Buffer.from(text));
  }
  return text;
}

/**
 * Header values fetch can send (it refuses control characters; those go out raw, see RAW_PROBES):
 * tab, printable ASCII and U+0080-U+00FF (fetch's Headers refuses NUL, CR, LF and anything past
 * U+00FF). A regular expression instead of building a Headers per value (0.3 s of the reduced fuzz);
 * both agree on half a million strings, every UTF-16 unit among them.
 */
function headerSafe(value: string): string | undefined {
  return /[^\t\x20-\x7e\x80-\xff]/.test(value) ? undefined : value;
}

const headers = fc.record(
  {
    "content-type": fc.constantFrom(...CONTENT_TYPES),
    authorization: fc.oneof(fc.constant(`Bearer ${FUZZ_TOKEN}`), fc.constant("Bearer wrong-token"), hostileString.map((s) => `Bearer ${s}`)),
    "last-event-id": hostileString,
    "x-edgepipe-timestamp": fc.oneof(fc.constant(String(Math.floor(Date.now() / 1000))), hostileString),
    "x-edgepipe-signature": fc.oneof(hostileString, fc.constant(`v2=${"0".repeat(64)},kid=fuzz,nonce=${"a".repeat(32)}`), fc.constant("v1=zz,kid=fuzz")),
    accept: fc.constantFrom("application/json", "text/event-stream", "*/*", "application/json, text/event-stream"),
    origin: fc.constantFrom("http://evil.example", "null"),
  },
  { requiredKeys: ["content-type"] },
).map((h) => Object.fromEntries(Object.entries(h).flatMap(([k, v]) => (headerSafe(v) === undefined ? [] : [[k, v]]))));

/** The routes of the app (GET also answers HEAD), as fuzz endpoints. */
export function fuzzEndpoints(): Array<{ method: string; path: string }> {
  const seen = new Set<string>();
  const out: Array<{ method: string; path: string }> = [];
  for (const r of app.routes) {
    if (r.method === "ALL" || r.path.includes("*")) continue;
    const key = `${r.method} ${r.path}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ method: r.method, path: r.path });
  }
  out.push({ method: "HEAD", path: "/v1/feeds/:uid/events" });
  return out;
}

/** The arbitrary of cases for one endpoint. */
function casesFor({ method, path }: { method: string; path: string }): fc.Arbitrary<FuzzCase> {
  const params = [...path.matchAll(/:([A-Za-z]+)/g)].map((m) => m[1]);
  const paramValues = fc.tuple(...params.map((p) => fc.oneof(hostileString, fc.constantFrom(p === "name" ? "fetcher" : p === "uid" ? "u0001" : p === "topic" ? "sports" : "fz-run")))) as fc.Arbitrary<string[]>;
  const query = fc.array(fc.tuple(fc.constantFrom("limit", "cursor", "stage", "status", "after", "x", "__proto__"), hostileString), { maxLength: 3 });
  return fc.record({ values: paramValues, query, headers, body, sign: fc.boolean(), rawMethod: fc.constantFrom(method, method, method, "PATCH", "OPTIONS") }).map(({ values, query, headers, body, sign, rawMethod }) => {
    let i = 0;
    const filled = path.replace(/:([A-Za-z]+)/g, () => segment(values[i++] ?? ""));
    const qs = query.length ? `?${query.map(([k, v]) => `${k}=${segment(v)}`).join("&")}` : "";
    const withBody = !["GET", "HEAD", "OPTIONS"].includes(rawMethod);
    return { method: rawMethod, path: filled + qs, headers, ...(withBody ? { body } : {}), sign: sign && path.startsWith("/stages/") };
  });
}

export interface EndpointReport {
  endpoint: string;
  cases: number;
  statuses: Record<string, number>;
  serverErrors: number;
  nonJson4xx: number;
  /** No answer within the bound (`answerWithinMs`, 20 s by default). */
  hangs: number;
  /** The connection failed before an answer was read (reset, closed, refused), also when sent again. */
  resets: number;
  /**
   * Requests that failed with "other side closed" before any answer and were
   * sent once more on a fresh connection (then answered). Both servers close a
   * keep-alive connection idle for 5 s; fetch's pool keeps one about as long,
   * so on a loaded machine it now and then sends on one the server is closing.
   * Any HTTP client meets this; it is no answer of the app's.
   */
  staleRetries: number;
  /** workerd refused the request head itself (over its 128 KiB limit: its plain-text 431, or a reset while the head was still being sent): the Worker never ran. */
  platform431: number;
  /** Largest RSS of the server under test while this route was fuzzed, MB (Node: this process, which serves the app; workerd: its processes). */
  maxRssMb: number;
  /** /health answered 503 (its contract when Valkey is slow), counted apart. */
  health503: number;
  examples: string[];
}

export interface FuzzReport {
  runtime: string;
  endpoints: EndpointReport[];
  totalCases: number;
  serverErrors: number;
  nonJson4xx: number;
  hangs: number;
  resets: number;
  staleRetries: number;
  platform431: number;
  crashes: number;
  keysOutside: string[];
  /** Every case that got no answer, 5xx or non-JSON 4xx, whole (for `--dump` and `--replay`). */
  failed: FailedCase[];
  rawProbes?: number;
  rawBad?: string[];
  limits?: LimitProbe[];
}

export interface FailedCase {
  runtime: string;
  endpoint: string;
  problem: string;
  case: FuzzCase;
}

type Send = (c: FuzzCase) => Promise<{ status: number; contentType: string; text: string }>;

/** workerd's limit on a request head (request line, headers, blank line): 128 KiB, measured (131,072 bytes answer, 131,073 get its 431). */
export const WORKERD_MAX_HEAD_BYTES = 128 * 1024;
/** Headers undici's fetch adds to a request (host, connection, accept, accept-language, sec-fetch-mode, user-agent, accept-encoding, content-length): under this many bytes. */
const FETCH_ADDED_HEAD_BYTES = 512;

/** Bytes of the request head the case puts on the wire, without what fetch adds. */
export function headBytes(c: FuzzCase): number {
  let n = Buffer.byteLength(`${c.method} ${c.path} HTTP/1.1\r\n\r\n`);
  for (const [k, v] of Object.entries(c.headers)) n += Buffer.byteLength(`${k}: ${v}\r\n`);
  return n;
}

/** fetch's error when the server closed the connection before any answer: an idle keep-alive connection closed as it was reused. */
function isStaleConnection(err: unknown): boolean {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return !(err instanceof NoAnswer) && cause?.code === "UND_ERR_SOCKET" && /other side closed/.test(cause.message ?? "");
}

/** An error of our own timer (the answer bound), as opposed to a failed connection. */
class NoAnswer extends Error {}

/** Samples the RSS of the server under test. */
type RssProbe = () => number;

async function runCases(runtime: string, send: Send, { seed, cases, rssOf, failed, only, log }: { seed: number; cases: number; rssOf: RssProbe; failed: FailedCase[]; only?: RegExp; log: (line: string) => void }): Promise<EndpointReport[]> {
  const reports: EndpointReport[] = [];
  for (const [n, endpoint] of fuzzEndpoints().entries()) {
    if (only && !only.test(`${endpoint.method} ${endpoint.path}`)) continue;
    const sampling = Date.now();
    const samples = fc.sample(casesFor(endpoint), { seed: seed + n, numRuns: cases });
    const sampledMs = Date.now() - sampling;
    // Sampling a route's cases (bodies up to 3 MB, strings up to 200 KB) blocks this event loop for
    // seconds on a loaded machine. workerd closes a keep-alive connection idle for 5 s, and fetch's pool
    // learns of that only when its loop polls the socket: a request sent right after a longer block
    // goes out on a connection already closed and fails with "other side closed" (UND_ERR_SOCKET),
    // although the server never saw it. One turn of the loop lets the pool drop those connections first.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const report: EndpointReport = { endpoint: `${endpoint.method} ${endpoint.path}`, cases: 0, statuses: {}, serverErrors: 0, nonJson4xx: 0, hangs: 0, resets: 0, staleRetries: 0, platform431: 0, maxRssMb: 0, health503: 0, examples: [] };
    const sampleRss = () => (report.maxRssMb = Math.max(report.maxRssMb, Math.round(rssOf() / 1e6)));
    sampleRss();
    const sampler = setInterval(sampleRss, 100);
    const fail = (c: FuzzCase, problem: string) => failed.push({ runtime, endpoint: report.endpoint, problem, case: c });
    // A few at a time: enough to overlap waiting, not a load test.
    for (let i = 0; i < samples.length; i += 8) {
      await Promise.all(
        samples.slice(i, i + 8).map(async (c) => {
          report.cases++;
          const describe = () => `${c.method} ${c.path.slice(0, 120)} ${JSON.stringify(c.headers).slice(0, 200)} body=${(c.body ?? "").slice(0, 120)}`;
          try {
            const res = await send(c).catch((err: unknown) => {
              if (!isStaleConnection(err)) throw err;
              // The server closed a keep-alive connection as fetch's pool reused it (see staleRetries):
              // once more, on a connection of its own; a second failure counts.
              report.staleRetries++;
              return send({ ...c, headers: { ...c.headers, connection: "close" } });
            });
            report.statuses[res.status] = (report.statuses[res.status] ?? 0) + 1;
            if (res.status === 503 && endpoint.path === "/health") {
              // /health's contract: 503 when Valkey does not answer within 700 ms (a loaded machine), not an error of the input.
              report.health503++;
            } else if (res.status >= 500) {
              report.serverErrors++;
              fail(c, `${res.status}`);
              if (report.examples.length < 5) report.examples.push(`${res.status}: ${describe()} -> ${res.text.slice(0, 300)}`);
            } else if (runtime === "workerd" && res.status === 431 && /header too large/i.test(res.text)) {
              // workerd's own limit on the request head (the Worker never sees the request): counted, reported, not the app's answer.
              report.platform431++;
            } else if (res.status >= 400 && c.method !== "HEAD" && !isErrorJson(res, endpoint.path === "/mcp")) {
              report.nonJson4xx++;
              fail(c, `${res.status} not JSON`);
              if (report.examples.length < 5) report.examples.push(`${res.status} not JSON: ${describe()} -> ${res.text.slice(0, 200)}`);
            }
          } catch (err) {
            const cause = (err as { cause?: { code?: string; message?: string } }).cause;
            const why = err instanceof NoAnswer ? err.message : `${(err as Error).message}${cause ? `: ${cause.code ?? ""} ${cause.message ?? ""}` : ""}`;
            if (runtime === "workerd" && headBytes(c) + FETCH_ADDED_HEAD_BYTES > WORKERD_MAX_HEAD_BYTES && !(err instanceof NoAnswer)) {
              // A head over workerd's limit: workerd stops reading, answers 431 and closes; a client still
              // writing that head gets a reset instead of the 431. The Worker never ran.
              report.platform431++;
              return;
            }
            if (err instanceof NoAnswer) report.hangs++;
            else report.resets++;
            fail(c, `no answer (${why})`);
            if (report.examples.length < 5) report.examples.push(`no answer (${why}): ${describe()}`);
          }
        }),
      );
    }
    clearInterval(sampler);
    sampleRss();
    reports.push(report);
    const problems = report.serverErrors + report.nonJson4xx + report.hangs + report.resets;
    log(`[fuzz ${runtime}] ${report.endpoint}: ${report.cases} cases, statuses ${JSON.stringify(report.statuses)}, max RSS ${report.maxRssMb} MB, sampled in ${sampledMs} ms${problems ? `, PROBLEMS ${report.serverErrors} 5xx / ${report.nonJson4xx} non-JSON 4xx / ${report.hangs} hangs / ${report.resets} resets` : ""}`);
  }
  return reports;
}

/** Sends each case alone (nothing else in flight), three times, and logs what came back. */
async function replayCases(runtime: string, send: Send, cases: FailedCase[], log: (line: string) => void): Promise<void> {
  for (const f of cases) {
    const c = f.case;
    const outcomes: string[] = [];
    for (let i = 0; i < 3; i++) {
      try {
        const res = await send(c);
        outcomes.push(`${res.status} ${res.contentType.split(";")[0]} ${res.text.slice(0, 100)}`);
      } catch (err) {
        const cause = (err as { cause?: { code?: string } }).cause;
        outcomes.push(`no answer (${(err as Error).message}${cause?.code ? `: ${cause.code}` : ""})`);
      }
    }
    log(`[replay ${runtime}] ${c.method} ${c.path.slice(0, 100)} (head ${headBytes(c)} B, body ${Buffer.byteLength(c.body ?? "")} B; was ${f.runtime}: ${f.problem}) -> ${outcomes.join(" | ")}`);
  }
}

/** The API's error shape; on /mcp a JSON-RPC error (`{ jsonrpc, error: { code: number, message } }`) is the protocol's. */
function isErrorJson(res: { contentType: string; text: string }, jsonRpc: boolean): boolean {
  if (!res.contentType.includes("application/json")) return false;
  try {
    const body = JSON.parse(res.text) as { error?: { code?: unknown; message?: unknown } };
    if (jsonRpc && typeof body.error?.code === "number" && typeof body.error?.message === "string") return true;
    return typeof body.error?.code === "string" && typeof body.error?.message === "string";
  } catch {
    return false;
  }
}

/**
 * Sends cases with fetch, each bounded by `answerWithinMs` (no answer by then: a hang). The body goes
 * as bytes, encoded here (the megabyte bodies once for the run), which is what fetch puts on the
 * wire for the string (its UTF-8; every case names a content-type, else fetch's default is added):
 * fetch measures a string body and encodes it again for every request. `redirect: "error"` spares
 * fetch a copy of the request (the body stream teed, every chunk copied) kept to follow a redirect;
 * the app answers none, and one would count as a reset.
 */
function fetchSender(base: string, answerWithinMs: number): Send {
  return async (c) => {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new NoAnswer(`no answer within ${answerWithinMs / 1000} s`)), answerWithinMs);
    try {
      const res = await fetch(`${base}${c.path}`, { method: c.method, ...wire(c), redirect: "error", signal: abort.signal });
      return await readAnswer(res, abort);
    } finally {
      clearTimeout(timer);
    }
  };
}

/** A case's headers (signed when it says so) and its body as the bytes fetch would send for the string. */
function wire(c: FuzzCase): { headers: Record<string, string>; body?: Uint8Array<ArrayBuffer> } {
  const body = c.body === undefined ? undefined : (encodedMegabyteBodies.get(c.body) ?? Buffer.from(c.body));
  let headers = c.headers;
  if (body && !Object.keys(headers).some((k) => k.toLowerCase() === "content-type")) headers = { ...headers, "content-type": "text/plain;charset=UTF-8" };
  if (c.sign) headers = { ...headers, ...signBytes(c.method, decodeURIComponentSafe(c.path.split("?")[0]), body ?? new Uint8Array(0)) };
  return { headers, ...(body ? { body } : {}) };
}

/**
 * signStageRequest's headers for a body already encoded: the same MAC (HMAC-SHA-256 over
 * `v2\n<timestamp>\n<nonce>\n<METHOD>\n<path>\n` and the body's UTF-8), computed over the bytes
 * with node:crypto instead of encoding the body's text once more (a 32 MB string: 0.25 s).
 * checkSigner compares the two before a run, so a change of the format fails the run.
 */
function signBytes(method: string, path: string, body: Uint8Array, now = Date.now(), nonce = randomBytes(16).toString("hex")): Record<string, string> {
  const timestamp = String(Math.floor(now / 1000));
  const mac = createHmac("sha256", SIGNING_KEY.secret).update(`v2\n${timestamp}\n${nonce}\n${method.toUpperCase()}\n${path}\n`).update(body).digest("hex");
  return { [TIMESTAMP_HEADER]: timestamp, [SIGNATURE_HEADER]: `v2=${mac},kid=${SIGNING_KEY.kid},nonce=${nonce}` };
}

/** Throws unless signBytes signs as signStageRequest does (a body with a multi-byte character and a lone surrogate). */
async function checkSigner(): Promise<void> {
  const body = JSON.stringify({ payloads: ["\u00e9\ud83d\ude00\ud800"] }).replace("\\ud800", "\ud800");
  const [now, nonce] = [Date.now(), "0123456789abcdef0123456789abcdef"];
  const ours = signBytes("post", "/stages/fetcher", Buffer.from(body), now, nonce);
  const theirs = await signStageRequest(SIGNING_KEY, "post", "/stages/fetcher", body, now, nonce);
  if (JSON.stringify(ours) !== JSON.stringify(theirs)) throw new Error(`the fuzz's signer no longer matches signStageRequest: ${JSON.stringify(ours)} vs ${JSON.stringify(theirs)}`);
}

/** Reads a response, stopping early for a stream (SSE) once its headers arrived. */
async function readAnswer(res: Response, abort: AbortController): Promise<{ status: number; contentType: string; text: string }> {
  const contentType = res.headers.get("content-type") ?? "";
  if (contentType.includes("text/event-stream")) {
    abort.abort();
    return { status: res.status, contentType, text: "" };
  }
  return { status: res.status, contentType, text: await res.text() };
}

function decodeURIComponentSafe(path: string): string {
  try {
    return new URL(path, "http://x").pathname;
  } catch {
    return path;
  }
}

/**
 * Requests fetch cannot send (CR/LF/NUL in the request line and headers,
 * oversized heads, broken framing), written to the socket as is. Each must
 * get a JSON 4xx or a clean close, never a 5xx.
 */
const RAW_PROBES = [
  "GET /v1/users/a\r\nSET%20x HTTP/1.1\r\nHost: x\r\n\r\n",
  "GET /v1/users/u1 HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n",
  "GET /v1/users/u1 HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
  "GET /v1/feeds/u1/events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1\r\nLast-Event-ID\0: 2\r\n\r\n",
  "POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{}{}{}",
  "POST /v1/runs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nzz\r\n",
  "POST /stages/fetcher HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffff\r\n",
  `GET /v1/users/${"a".repeat(2 * 1024 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`,
  `GET /v1/topics HTTP/1.1\r\nHost: x\r\nX-Big: ${"b".repeat(2 * 1024 * 1024)}\r\n\r\n`,
  "\0\0\0\0\r\n\r\n",
  "GET / HTTP/9.9\r\n\r\n",
];

/** Sends the raw probes; counts answers that are 5xx or a 4xx without a JSON body. */
async function rawProbes(url: string): Promise<{ probes: number; bad: string[] }> {
  const { connect } = await import("node:net");
  const { hostname, port } = new URL(url);
  const bad: string[] = [];
  for (const probe of RAW_PROBES) {
    const answer = await new Promise<string>((resolve) => {
      const socket = connect(Number(port), hostname);
      let text = "";
      socket.setTimeout(10_000, () => socket.destroy());
      socket.on("data", (d) => (text += d.toString("latin1")));
      socket.on("close", () => resolve(text));
      socket.on("error", () => undefined);
      socket.write(probe, "latin1", () => socket.end());
    });
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
    const json = /content-type: application\/json/i.test(answer) && /"error":\{"code":"/.test(answer);
    if (status >= 500 || (status >= 400 && !json)) bad.push(`${JSON.stringify(probe.slice(0, 60))} -> ${answer.slice(0, 120)}`);
  }
  return { probes: RAW_PROBES.length, bad };
}

export interface FuzzOptions {
  seed?: number;
  cases?: number;
  runtimes?: Array<"node" | "workerd">;
  rss?: boolean;
  /** Only the routes whose "METHOD /path" matches. */
  only?: RegExp;
  /** A case with no answer within this long is a hang (default 20 s; the suite, on a shared loaded machine, allows more). */
  answerWithinMs?: number;
  /** Instead of fuzzing: send these cases one at a time (each alone, three times) and log each answer. */
  replay?: FailedCase[];
  /** The news deploy bundle to load in workerd, already built (the suite shares one); default: build it into the fuzz's temp dir. */
  workerBundle?: { scriptPath: string };
  log?: (line: string) => void;
}

/** Pids of the workerd processes this process started (Miniflare spawns them). */
function workerdPids(): number[] {
  const parent = new Map<number, number>();
  const names = new Map<number, string>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      names.set(Number(entry), stat.slice(stat.indexOf("(") + 1, close));
      parent.set(Number(entry), Number(stat.slice(close + 2).split(" ")[1]));
    } catch {
      // gone meanwhile
    }
  }
  const isMine = (pid: number): boolean => {
    for (let p = parent.get(pid), hops = 0; p !== undefined && hops < 10; p = parent.get(p), hops++) if (p === process.pid) return true;
    return false;
  };
  return [...names].filter(([pid, name]) => name.includes("workerd") && isMine(pid)).map(([pid]) => pid);
}

/** Summed RSS of `pids` in bytes (0 for a pid that is gone). */
function rssOfPids(pids: number[]): number {
  let total = 0;
  for (const pid of pids) {
    try {
      total += Number(readFileSync(`/proc/${pid}/statm`, "utf8").split(" ")[1]) * 4096;
    } catch {
      // exited
    }
  }
  return total;
}

/** Starts a server, the runtimes, fuzzes them, checks the keyspace; resolves with one report per runtime. */
export async function runFuzz({ seed = 42, cases = 500, runtimes = ["node", "workerd"], rss = false, only, replay, answerWithinMs = 20_000, workerBundle, log = console.log }: FuzzOptions = {}): Promise<{ reports: FuzzReport[]; rss?: RssReport[] }> {
  await checkSigner();
  const dir = mkdtempSync(join(tmpdir(), "edgepipe-fuzz-"));
  const valkey = await launchValkey({ dataDir: join(dir, "valkey"), binary: findServerBinary(), appendOnly: false });
  const admin = connectValkey(valkey.url, { name: "fuzz-admin", log: () => {} });
  const reports: FuzzReport[] = [];
  let crashes = 0;
  const onCrash = (err: unknown) => {
    crashes++;
    log(`[fuzz] unhandled: ${(err as Error)?.stack ?? err}`);
  };
  process.on("unhandledRejection", onCrash);
  process.on("uncaughtException", onCrash);
  const quietError = console.error;
  // The app logs every 500 with its details; the fuzz counts them instead.
  console.error = () => {};
  const rssReport: RssReport[] = [];
  try {
    const base = { VALKEY_URL: valkey.url, PORT: "0", HOST: "127.0.0.1", DEMO: "off", API_TOKEN: FUZZ_TOKEN, STAGE_SIGNING_KEYS: `${SIGNING_KEY.kid}:${SIGNING_KEY.secret}`, WEB_DIR: "", BLOCK_MS: "200" };
    if (runtimes.includes("node")) {
      const rt = await startRuntime({ config: loadConfig({ ...base, KEY_PREFIX: "fzn" }, { appSettings: NewsSettings }), pipeline, app, log: () => {} });
      try {
        // Signed stage calls over HTTP: the Node app verifies them like a Worker does (STAGE_SIGNING_KEYS is set).
        const send = fetchSender(rt.url, answerWithinMs);
        const failed: FailedCase[] = [];
        if (replay) await replayCases("node", send, replay, log);
        const endpoints = replay ? [] : await runCases("node", send, { seed, cases, rssOf: () => process.memoryUsage.rss(), failed, only, log });
        const raw = await rawProbes(rt.url);
        log(`[fuzz node] raw socket probes (CR/LF/NUL in the head, 2 MB heads, broken framing): ${raw.probes}, bad answers ${raw.bad.length}${raw.bad.length ? `: ${raw.bad.join("; ")}` : ""}`);
        const limits = replay ? [] : await limitProbes(rt.url, { api: 1024 * 1024, stage: 32 * 1024 * 1024 });
        reports.push({ ...summarize("node", endpoints, crashes, failed), rawProbes: raw.probes, rawBad: raw.bad, limits });
        if (rss) rssReport.push(await measureRss("node", rt.url, () => process.memoryUsage.rss(), log));
      } finally {
        await rt.close();
      }
    }
    if (runtimes.includes("workerd")) {
      const bundle = workerBundle ?? (await buildWorkerBundle({ outdir: join(dir, "worker") }));
      const stack = await startHttpModeStack({
        config: loadConfig({ ...base, KEY_PREFIX: "fzw", UPSTASH_REDIS_REST_URL: "http://127.0.0.1:0" }, { appSettings: NewsSettings }),
        pipeline,
        workerd: { kind: "miniflare", scriptPath: bundle.scriptPath },
        vars: { STAGE_SIGNING_KEYS: `${SIGNING_KEY.kid}:${SIGNING_KEY.secret}` },
        log: () => {},
      });
      try {
        const send = fetchSender(stack.url, answerWithinMs);
        const before = crashes;
        const failed: FailedCase[] = [];
        const pids = workerdPids();
        if (replay) await replayCases("workerd", send, replay, log);
        const endpoints = replay ? [] : await runCases("workerd", send, { seed, cases, rssOf: () => rssOfPids(pids), failed, only, log });
        const early = await earlyAnswerProbes(stack.url);
        log(`[fuzz workerd] early answers to 3 MB uploads (413 on a declared or chunked length, 401 unsigned, 404 no stage; before the body is read): ${early.probes}, lost ${early.bad.length}${early.bad.length ? `: ${early.bad.slice(0, 5).join("; ")}` : ""}`);
        const limits = replay ? [] : await limitProbes(stack.url, { api: 1024 * 1024, stage: 32 * 1024 * 1024 });
        reports.push({ ...summarize("workerd", endpoints, crashes - before, failed), rawProbes: early.probes, rawBad: early.bad, limits });
        if (rss) rssReport.push(await measureRss("workerd", stack.url, () => rssOfPids(pids), log));
      } finally {
        await stack.close();
      }
    }
    // Every key on the server must be in a namespace of the runtimes.
    const outside: string[] = [];
    let cursor = "0";
    do {
      const [next, keys] = (await admin.scan(cursor, "COUNT", 1000)) as [string, string[]];
      cursor = next;
      for (const k of keys) if (!k.startsWith("fzn:") && !k.startsWith("fzw:")) outside.push(k);
    } while (cursor !== "0");
    for (const r of reports) r.keysOutside = outside;
  } finally {
    console.error = quietError;
    process.off("unhandledRejection", onCrash);
    process.off("uncaughtException", onCrash);
    await closeConnection(admin, 500);
    await valkey.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return { reports, rss: rss ? rssReport : undefined };
}

function summarize(runtime: string, endpoints: EndpointReport[], crashes: number, failed: FailedCase[]): FuzzReport {
  const sum = (f: (e: EndpointReport) => number) => endpoints.reduce((a, e) => a + f(e), 0);
  return { runtime, endpoints, totalCases: sum((e) => e.cases), serverErrors: sum((e) => e.serverErrors), nonJson4xx: sum((e) => e.nonJson4xx), hangs: sum((e) => e.hangs), resets: sum((e) => e.resets), staleRetries: sum((e) => e.staleRetries), platform431: sum((e) => e.platform431), crashes, keysOutside: [], failed };
}

export interface LimitProbe {
  endpoint: string;
  /** The largest body that is not refused as too large (bytes), or null for routes that read no body. */
  limit: number | null;
  atLimit: number;
  overLimit: number;
  /** Probes sent again because the connection broke while the body was still being written (EPIPE, ECONNRESET). */
  resent?: number;
}

/**
 * The body limit of every route that reads a body, measured: a body of
 * exactly the limit (spaces, so it never parses) must not get 413, one byte
 * more must. Stage calls are signed with the real key (the signature is
 * checked before the body), so the stage limit is what is measured.
 */
export async function limitProbes(url: string, limits: { api: number; stage: number }): Promise<LimitProbe[]> {
  const out: LimitProbe[] = [];
  const buffers = new Map<number, Buffer<ArrayBuffer>>();
  const spaces = (bytes: number) => buffers.get(bytes) ?? buffers.set(bytes, Buffer.alloc(bytes, 0x20)).get(bytes)!;
  for (const { method, path } of fuzzEndpoints()) {
    const filled = path.replace(":name", "fetcher").replace(":uid", "u0001").replace(":runId", "fz-run").replace(":event", "ev").replace(":topic", "sports");
    if (["GET", "HEAD"].includes(method)) {
      out.push({ endpoint: `${method} ${path}`, limit: null, atLimit: 0, overLimit: 0 });
      continue;
    }
    const limit = path.startsWith("/stages/") ? limits.stage : limits.api;
    let resent = 0;
    const status = async (bytes: number) => {
      // The body as bytes (a string of 32 MB costs fetch a measuring pass and an encoding, and the signature another), cut from one buffer per size.
      const body = spaces(limit + 1).subarray(0, bytes);
      const headers = { "content-type": "application/json", authorization: `Bearer ${FUZZ_TOKEN}`, ...(path.startsWith("/stages/") ? signBytes(method, decodeURIComponentSafe(filled), body) : {}) };
      // A server that answers an over-limit body and closes while fetch still writes it can make
      // fetch fail with EPIPE (seen once, workerd at machine load 15) although the answer was
      // sent: such a probe is sent again, up to twice, and counted.
      for (let attempt = 0; ; attempt++) {
        try {
          const res = await fetch(`${url}${filled}`, { method, headers, body, redirect: "error" });
          await res.arrayBuffer();
          return res.status;
        } catch (err) {
          const code = ((err as Error).cause as NodeJS.ErrnoException | undefined)?.code;
          if (attempt >= 2 || (code !== "EPIPE" && code !== "ECONNRESET")) throw err;
          resent++;
        }
      }
    };
    const atLimit = await status(limit);
    const overLimit = await status(limit + 1);
    out.push({ endpoint: `${method} ${path}`, limit, atLimit, overLimit, ...(resent ? { resent } : {}) });
  }
  return out;
}

/**
 * Uploads the app answers before reading (a declared length over the limit, an
 * unsigned stage call, no such route, a write without the token), 3 MB each,
 * written to the socket as a client does: the whole answer must arrive, the
 * upload must not be reset. Each probe runs `repeat` times.
 */
export async function earlyAnswerProbes(url: string, repeat = 6): Promise<{ probes: number; bad: string[] }> {
  const { connect } = await import("node:net");
  const { hostname, port } = new URL(url);
  const mb = 3 * 1024 * 1024;
  const chunk = Buffer.alloc(64 * 1024, 0x20);
  const probes: Array<{ line: string; status: number; chunked?: boolean }> = [
    { line: "POST /v1/runs", status: 413 },
    { line: "POST /v1/runs", status: 413, chunked: true },
    { line: "POST /v1/dead-letters/redrive", status: 413 },
    { line: "POST /stages/fetcher", status: 401 },
    { line: "POST /stages/no-such-stage", status: 404 },
  ];
  const bad: string[] = [];
  let count = 0;
  for (let i = 0; i < repeat; i++) {
    await Promise.all(
      probes.map(async ({ line, status: expected, chunked }) => {
        count++;
        const answer = await new Promise<{ bytes: Buffer; error?: string }>((resolve) => {
          const socket = connect(Number(port), hostname);
          const parts: Buffer[] = [];
          let error: string | undefined;
          socket.setTimeout(20_000, () => socket.destroy(new Error("no answer within 20 s")));
          socket.on("data", (d: Buffer) => parts.push(d));
          socket.on("error", (err: NodeJS.ErrnoException) => (error = err.code ?? err.message));
          socket.on("close", () => resolve({ bytes: Buffer.concat(parts), error }));
          const framing = chunked ? "transfer-encoding: chunked" : `content-length: ${mb}`;
          socket.write(`${line} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n${framing}\r\nconnection: close\r\n\r\n`);
          let sent = 0;
          const pump = () => {
            while (sent < mb) {
              sent += chunk.length;
              const ok = socket.write(chunked ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from("\r\n")]) : chunk);
              if (!ok) return void socket.once("drain", pump);
            }
            if (chunked) socket.end("0\r\n\r\n");
            else socket.end();
          };
          socket.on("error", () => undefined);
          pump();
        });
        const text = answer.bytes.toString("latin1");
        const split = text.indexOf("\r\n\r\n");
        const head = split >= 0 ? text.slice(0, split) : text;
        const rest = split >= 0 ? answer.bytes.subarray(split + 4) : Buffer.alloc(0);
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
        const length = /^content-length:\s*(\d+)/im.exec(head)?.[1];
        const complete = length !== undefined ? rest.length === Number(length) : /transfer-encoding:\s*chunked/i.test(head) && rest.toString("latin1").endsWith("0\r\n\r\n");
        const json = /"error":\{"code":"/.test(rest.toString("latin1"));
        if (status !== expected || !complete || !json || answer.error) {
          bad.push(`${line}${chunked ? " (chunked)" : ""}: ${status || "no answer"}${answer.error ? ` (${answer.error})` : ""}${status && !complete ? " (answer cut short)" : ""}`);
        }
      }),
    );
  }
  return { probes: count, bad };
}

export interface RssReport {
  runtime: string;
  baselineMb: number;
  peakMb: number;
  posts: Array<{ kind: string; status: number; sentMb: number; ms: number }>;
}

/** Streams `mb` MB to the stage route without buffering it here; resolves with the answer's status. */
function streamPost(url: string, mb: number, headers: Record<string, string>): Promise<{ status: number; sentMb: number }> {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    let sent = 0;
    let status = 0;
    const req = httpRequest(`${url}/stages/fetcher`, { method: "POST", headers: { "content-type": "application/json", ...headers } }, (res) => {
      status = res.statusCode ?? 0;
      res.resume();
      res.on("end", () => {
        req.destroy();
        resolve({ status, sentMb: sent });
      });
    });
    req.on("error", (err) => (status ? resolve({ status, sentMb: sent }) : reject(err)));
    const pump = () => {
      while (sent < mb && !status) {
        sent++;
        if (!req.write(chunk)) return void req.once("drain", pump);
      }
      if (!status) req.end();
    };
    pump();
  });
}

/** RSS of the server (Node: this process, where the runtime runs; workerd: its processes) while 400 MB stage posts stream in. */
async function measureRss(runtime: string, url: string, rssOf: RssProbe, log: (line: string) => void): Promise<RssReport> {
  global.gc?.();
  const baseline = rssOf();
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, rssOf())), 50);
  const posts: RssReport["posts"] = [];
  try {
    const forged = { "x-edgepipe-timestamp": String(Math.floor(Date.now() / 1000)), "x-edgepipe-signature": `v2=${"0".repeat(64)},kid=fuzz,nonce=${"b".repeat(32)}` };
    for (const [kind, headers] of [["unsigned", {}], ["unsigned", {}], ["unsigned", {}], ["forged signature (valid headers)", forged]] as const) {
      const started = Date.now();
      const { status, sentMb } = await streamPost(url, 400, headers);
      posts.push({ kind, status, sentMb, ms: Date.now() - started });
      log(`[fuzz rss ${runtime}] 400 MB ${kind} stage post: ${status} after ${sentMb} MB sent; rss peak so far ${(peak / 1e6).toFixed(0)} MB`);
    }
  } finally {
    clearInterval(sampler);
  }
  return { runtime, baselineMb: Math.round(baseline / 1e6), peakMb: Math.round(peak / 1e6), posts };
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      seed: { type: "string", default: "42" },
      cases: { type: "string", default: "500" },
      runtime: { type: "string", default: "both" },
      rss: { type: "boolean", default: false },
      only: { type: "string" },
      dump: { type: "string" },
      replay: { type: "string" },
    },
  });
  const runtimes = values.runtime === "both" ? (["node", "workerd"] as const) : ([values.runtime] as Array<"node" | "workerd">);
  const started = Date.now();
  const replay = values.replay ? (JSON.parse(readFileSync(values.replay, "utf8")) as FailedCase[]) : undefined;
  const { reports, rss } = await runFuzz({ seed: Number(values.seed), cases: Number(values.cases), runtimes: [...runtimes], rss: values.rss, only: values.only ? new RegExp(values.only) : undefined, replay });
  if (replay) {
    console.log(`\nreplayed ${replay.length} cases`);
    process.exit(0);
  }
  let failed = false;
  for (const r of reports) {
    console.log(`\n${r.runtime}: ${r.totalCases} cases over ${r.endpoints.length} endpoints (${Math.min(...r.endpoints.map((e) => e.cases))} to ${Math.max(...r.endpoints.map((e) => e.cases))} each), seed ${values.seed}`);
    const health503 = r.endpoints.reduce((a, e) => a + e.health503, 0);
    console.log(`  5xx ${r.serverErrors}${health503 ? ` (besides ${health503} /health 503s, its answer while Valkey is slower than 700 ms)` : ""}, non-JSON 4xx ${r.nonJson4xx}, hangs ${r.hangs}, resets ${r.resets} (sent again after the server closed an idle connection: ${r.staleRetries}), crashes ${r.crashes}, keys outside the namespace ${r.keysOutside.length}${r.platform431 ? `; refused by workerd itself (head over its 128 KiB limit: its 431 or a reset): ${r.platform431}` : ""}`);
    console.log("  | route | cases | 2xx | 4xx | 5xx | /health 503 | hangs | resets | sent again (idle connection closed) | refused by workerd | max RSS MB |");
    console.log("  |---|---|---|---|---|---|---|---|---|---|---|");
    for (const e of r.endpoints) {
      const count = (lo: number) => Object.entries(e.statuses).reduce((a, [st, n]) => a + (Number(st) >= lo && Number(st) < lo + 100 ? n : 0), 0);
      console.log(`  | ${e.endpoint} | ${e.cases} | ${count(200)} | ${count(400)} | ${count(500) - e.health503} | ${e.health503} | ${e.hangs} | ${e.resets} | ${e.staleRetries} | ${e.platform431} | ${e.maxRssMb} |`);
    }
    for (const e of r.endpoints) for (const ex of e.examples) console.log(`  ${e.endpoint}: ${ex}`);
    if (r.rawProbes !== undefined) console.log(`  ${r.runtime === "node" ? "raw socket probes" : "early-answer upload probes"} ${r.rawProbes}, bad answers ${r.rawBad?.length ?? 0}${r.rawBad?.length ? `: ${r.rawBad.join("; ")}` : ""}`);
    const limitBad = (r.limits ?? []).filter((l) => l.limit !== null && (l.atLimit === 413 || l.overLimit !== 413));
    if (r.limits?.length) {
      console.log(`  body limits (a body of the limit not refused as too large, one byte more 413): ${limitBad.length ? `WRONG on ${limitBad.map((l) => `${l.endpoint} (${l.atLimit}/${l.overLimit})`).join(", ")}` : "as configured on every route"}`);
      for (const l of r.limits) console.log(`    ${l.endpoint}: ${l.limit === null ? "reads no body" : `${l.limit} bytes (at the limit ${l.atLimit}, one more ${l.overLimit})`}`);
    }
    if (r.serverErrors || r.nonJson4xx || r.hangs || r.resets || r.crashes || r.keysOutside.length || r.rawBad?.length || limitBad.length) failed = true;
    if (r.keysOutside.length) console.log(`  outside: ${r.keysOutside.slice(0, 10).join(", ")}`);
  }
  if (values.dump) {
    const all = reports.flatMap((r) => r.failed);
    writeFileSync(values.dump, JSON.stringify(all, null, 1));
    console.log(`\n${all.length} failed cases written to ${values.dump} (npm run fuzz -- --replay ${values.dump} --runtime ...)`);
  }
  for (const r of rss ?? []) console.log(`\n${r.runtime}: RSS under 400 MB stage posts: baseline ${r.baselineMb} MB, peak ${r.peakMb} MB; ${r.posts.map((p) => `${p.kind} -> ${p.status} after ${p.sentMb} MB (${p.ms} ms)`).join("; ")}`);
  console.log(`\nfuzz ${failed ? "FAILED" : "passed"} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  process.exit(failed ? 1 : 0);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main(process.argv.slice(2)).catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
