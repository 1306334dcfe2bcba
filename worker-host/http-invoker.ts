/**
 * Edge-mode dispatch: POSTs signed batches of envelopes to
 * `STAGE_BASE_URL/stages/:name` (workerd under `wrangler dev`, or Workers).
 *
 * - keep-alive connections (one node:http Agent, sockets capped by `maxConcurrency`)
 * - a timeout per request (AbortSignal)
 * - bounded concurrency across all stages (a small semaphore)
 * - batches larger than `maxBatchPerRequest` split into several requests
 * - a non-2xx answer, a timeout or a malformed answer fails that request; its
 *   envelopes become retryable failures (and when every request of a batch
 *   fails, `invoke` throws, which the stage worker treats the same way)
 * - a request that got no answer at all (connection refused or reset, the
 *   timeout) fails with StageTransportError: when a whole batch fails so, the
 *   stage worker waits for the endpoint and retries without using a delivery
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { StageResponse, type Envelope, type StageItemResult } from "../functions/envelope";
import { parseSigningKeys, signStageRequest, type SigningKey } from "../functions/signing";
import { StageTransportError, type Invoker } from "./invoker";

export interface HttpInvokerOptions {
  /** Where the stage handlers answer, e.g. http://127.0.0.1:8787 or https://edgepipe.example.workers.dev */
  baseUrl: string;
  /** `STAGE_SIGNING_KEYS`; the first key signs. */
  signingKeys: string;
  /** Per request, milliseconds. */
  timeoutMs?: number;
  /** Requests in flight at once, across all stages. */
  maxConcurrency?: number;
  /** Most envelopes per request; larger batches are split. */
  maxBatchPerRequest?: number;
}

/** Counting semaphore: at most `limit` holders at once, FIFO. */
class Semaphore {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  constructor(private readonly limit: number) {}
  async acquire(): Promise<() => void> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    };
  }
}

function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * The HTTP invoker.
 * @example
 * const invoker = new HttpInvoker({ baseUrl: "http://127.0.0.1:8787", signingKeys: process.env.STAGE_SIGNING_KEYS! });
 * const results = await invoker.invoke("fetcher", envelopes);
 */
export class HttpInvoker implements Invoker {
  private readonly base: URL;
  private readonly key: SigningKey;
  private readonly agent: HttpAgent;
  private readonly semaphore: Semaphore;
  private readonly timeoutMs: number;
  private readonly maxBatch: number;
  /** Requests sent, envelopes carried, requests that failed (non-2xx, timeout, malformed). */
  readonly stats = { requests: 0, envelopes: 0, failures: 0 };

  constructor({ baseUrl, signingKeys, timeoutMs = 30_000, maxConcurrency = 16, maxBatchPerRequest = 100 }: HttpInvokerOptions) {
    this.base = new URL(baseUrl.endsWith("/") ? baseUrl : `${baseUrl}/`);
    if (this.base.protocol !== "http:" && this.base.protocol !== "https:") throw new Error(`STAGE_BASE_URL must be http(s), got ${baseUrl}`);
    [this.key] = parseSigningKeys(signingKeys);
    const agentOptions = { keepAlive: true, maxSockets: maxConcurrency, maxFreeSockets: maxConcurrency, scheduling: "lifo" as const };
    this.agent = this.base.protocol === "https:" ? new HttpsAgent(agentOptions) : new HttpAgent(agentOptions);
    this.semaphore = new Semaphore(maxConcurrency);
    this.timeoutMs = timeoutMs;
    this.maxBatch = maxBatchPerRequest;
  }

  async invoke(stage: string, envelopes: Envelope[]): Promise<StageItemResult[]> {
    const parts = chunk(envelopes, this.maxBatch);
    const settled = await Promise.allSettled(parts.map((part) => this.post(stage, part)));
    if (settled.every((s) => s.status === "rejected")) throw (settled[0] as PromiseRejectedResult).reason;
    return settled.flatMap((s, i) => {
      if (s.status === "fulfilled") return s.value;
      const message = `dispatch failed: ${(s.reason as Error).message}`;
      return parts[i].map(() => ({ ok: false as const, error: { message, retryable: true }, ms: 0 }));
    });
  }

  /** One signed request for one chunk. */
  private async post(stage: string, envelopes: Envelope[]): Promise<StageItemResult[]> {
    const url = new URL(`stages/${encodeURIComponent(stage)}`, this.base);
    const body = JSON.stringify({ envelopes });
    const release = await this.semaphore.acquire();
    this.stats.requests++;
    this.stats.envelopes += envelopes.length;
    try {
      const headers = await signStageRequest(this.key, "POST", url.pathname, body);
      const { status, text } = await this.send(url, body, headers);
      if (status < 200 || status > 299) throw new Error(`stage ${stage} answered ${status}: ${text.slice(0, 300)}`);
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new Error(`stage ${stage} answered non-JSON: ${text.slice(0, 200)}`);
      }
      const parsed = StageResponse.safeParse(json);
      if (!parsed.success) throw new Error(`stage ${stage} answered a malformed response: ${parsed.error.issues[0]?.path.join(".")}: ${parsed.error.issues[0]?.message}`);
      if (parsed.data.results.length !== envelopes.length) {
        throw new Error(`stage ${stage} answered ${parsed.data.results.length} results for ${envelopes.length} envelopes`);
      }
      return parsed.data.results;
    } catch (err) {
      this.stats.failures++;
      throw err;
    } finally {
      release();
    }
  }

  private send(url: URL, body: string, signature: Record<string, string>): Promise<{ status: number; text: string }> {
    const request = url.protocol === "https:" ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method: "POST",
          agent: this.agent,
          signal: AbortSignal.timeout(this.timeoutMs),
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body), ...signature },
        },
        (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
          res.on("error", (err: Error) => reject(new StageTransportError(`the answer from ${url.href} broke off: ${err.message}`)));
        },
      );
      // No answer at all: the endpoint is down or unreachable (or too slow), not a handler failure.
      req.on("error", (err: NodeJS.ErrnoException) =>
        reject(
          err.name === "AbortError"
            ? new StageTransportError(`no answer from ${url.href} within ${this.timeoutMs} ms`, true)
            : new StageTransportError(`cannot reach ${url.origin}: ${err.code ?? err.message}${err.code && err.message && !err.message.includes(err.code) ? ` (${err.message})` : ""}`),
        ),
      );
      req.end(body);
    });
  }

  async close(): Promise<void> {
    this.agent.destroy();
  }
}
