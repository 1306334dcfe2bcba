/**
 * How the worker-host reaches stage handlers. The in-process invoker calls the
 * Hono app's `fetch` directly (no network, no signature); the HTTP invoker
 * (edge mode) POSTs signed batches to STAGE_BASE_URL.
 */
import type { Envelope, StageItemResult } from "../functions/envelope";
import type { AppEnv } from "../functions/redis";
import { inProcessBatches, TAKES_BATCHES_BY_REFERENCE, type InProcessBatch } from "../functions/stage-route";

export interface Invoker {
  /** Runs a batch through a stage; resolves to one result per envelope, in order. */
  invoke(stage: string, envelopes: Envelope[]): Promise<StageItemResult[]>;
  close?(): Promise<void>;
}

/**
 * The stage endpoint could not be reached (connection refused or reset, no
 * answer within the timeout): nothing says the handler ran or failed. The
 * stage worker retries such a batch in place with backoff instead of
 * counting a delivery attempt (see StageWorker.invokeThroughOutage).
 */
export class StageTransportError extends Error {
  override readonly name = "StageTransportError";
  constructor(
    message: string,
    /** No answer within the timeout (the request may have reached the handler). */
    readonly timeout = false,
  ) {
    super(message);
  }
}

export function isTransportError(err: unknown): err is StageTransportError {
  return err instanceof Error && err.name === "StageTransportError";
}

interface FetchApp {
  fetch(request: Request, env?: unknown): Response | Promise<Response>;
}

/** Checks the answer has one well-formed result per envelope. */
export function checkResults(stage: string, sent: number, body: unknown): StageItemResult[] {
  const results = (body as { results?: unknown })?.results;
  if (!Array.isArray(results) || results.length !== sent) {
    throw new Error(`stage ${stage} answered ${Array.isArray(results) ? results.length : "no"} results for ${sent} envelopes`);
  }
  for (const r of results as StageItemResult[]) {
    if (typeof r !== "object" || r === null || typeof r.ok !== "boolean") throw new Error(`stage ${stage} answered a malformed result`);
  }
  return results as StageItemResult[];
}

/**
 * Dispatches in-process through `app.fetch(new Request(...), env)`, handing
 * the batch over by reference (apps built with createApp answer 204 and fill
 * in the results; any other app gets a plain JSON request).
 * @example
 * const invoker = new InProcessInvoker(app, { REDIS: upstashOverValkey(conn) });
 */
export class InProcessInvoker implements Invoker {
  private readonly env: AppEnv;
  /**
   * Idle bodiless Requests per stage, reused for by-reference batches: building
   * an undici Request costs ~5-7 us and several KB of garbage per batch (URL,
   * Headers, AbortSignal), which at low load is per hop. A Request without a
   * body is never consumed, and one is handed to a single app.fetch at a time.
   */
  private readonly idleRequests = new Map<string, Request[]>();
  constructor(private readonly app: FetchApp, env: AppEnv) {
    this.env = { ...env, IN_PROCESS: true };
  }

  async invoke(stage: string, envelopes: Envelope[]): Promise<StageItemResult[]> {
    if (!(this.app as unknown as Record<symbol, unknown>)[TAKES_BATCHES_BY_REFERENCE]) return this.invokeWithJson(stage, envelopes);
    // The batch travels by reference (see inProcessBatches): still a real app.fetch
    // through routing and middleware, without serializing envelopes and results.
    let idle = this.idleRequests.get(stage);
    if (!idle) this.idleRequests.set(stage, (idle = []));
    const request = idle.pop() ?? new Request(`http://in-process/stages/${stage}`, { method: "POST" });
    const batch: InProcessBatch = { envelopes };
    inProcessBatches.set(request, batch);
    let res: Response;
    try {
      res = await this.app.fetch(request, this.env);
    } finally {
      // The batch is unregistered before the Request can serve another one.
      inProcessBatches.delete(request);
      if (idle.length < 8) idle.push(request);
    }
    if (batch.taken) {
      if (res.status === 204 && batch.results) return checkResults(stage, envelopes.length, { results: batch.results });
      // The route took the batch and failed: report it, never run the handlers a second time.
      throw new Error(`stage ${stage} answered ${res.status}: ${(await res.text()).slice(0, 500)}`);
    }
    return this.invokeWithJson(stage, envelopes);
  }

  /** The plain JSON request, for apps that do not take batches by reference. */
  private async invokeWithJson(stage: string, envelopes: Envelope[]): Promise<StageItemResult[]> {
    const res = await this.app.fetch(
      new Request(`http://in-process/stages/${stage}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ envelopes }),
      }),
      this.env,
    );
    const text = await res.text();
    if (!res.ok) throw new Error(`stage ${stage} answered ${res.status}: ${text.slice(0, 500)}`);
    return checkResults(stage, envelopes.length, JSON.parse(text));
  }
}
