/**
 * A run's streamed output: a handler writes partial output (LLM tokens, say)
 * with `ctx.stream.write(chunk)` into a bounded per-run Valkey stream, and
 * `GET /v1/runs/:runId/stream` serves it as SSE with `Last-Event-ID` resume,
 * ending once every stage that wrote has committed its step (or the run ended).
 */
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import { settingsFor } from "./config";
import { apiError } from "./http";
import type { Keys } from "./keys";
import type { RedisClient } from "./redis";

/** Chunks a run's output stream keeps (older ones are trimmed, approximately). */
export const RUN_STREAM_MAXLEN = 10_000;
/** Lifetime of a run's output stream after its last write, seconds. */
export const RUN_STREAM_TTL_SECONDS = 24 * 3600;
/** Longest chunk one write takes, characters. */
export const MAX_CHUNK_CHARS = 64 * 1024;
/** How long one SSE response stays open before the client reconnects (with Last-Event-ID). */
export const RUN_STREAM_MAX_MS = 120_000;
/** Reconnect delay the SSE stream asks browsers for. */
const RETRY_MS = 1000;
/** Most chunks one read takes. */
const READ_BATCH = 200;

/** What a handler writes its streamed output with (`ctx.stream`). */
export interface RunStream {
  /**
   * Appends one chunk to the run's output stream. Chunks keep their order;
   * the promise resolves once the chunk is stored, and the step commits only
   * after every chunk of the handler is stored (awaiting is optional).
   */
  write(chunk: string): Promise<void>;
}

/** One chunk as stored and as served (`data` of an SSE `chunk` event). */
export interface RunStreamChunk {
  stage: string;
  attempt: number;
  chunk: string;
}

/**
 * The writer of one handler call: chunks queue up while a write is in
 * flight and leave together in one pipeline (one round trip, in order),
 * so a token-by-token producer costs few requests.
 */
export class RunStreamWriter implements RunStream {
  private queue: string[] = [];
  private flushing: Promise<void> | undefined;
  private expirySet = false;
  private readonly key: string;

  constructor(
    private readonly redis: RedisClient,
    keys: Keys,
    private readonly where: { runId: string; stage: string; attempt: number },
  ) {
    this.key = keys.runOutput(where.runId);
  }

  write(chunk: string): Promise<void> {
    if (typeof chunk !== "string") return Promise.reject(new TypeError("ctx.stream.write takes a string"));
    if (chunk.length > MAX_CHUNK_CHARS) return Promise.reject(new RangeError(`a stream chunk holds at most ${MAX_CHUNK_CHARS} characters`));
    this.queue.push(chunk);
    this.flushing ??= this.drain();
    return this.flushing;
  }

  /** Resolves when every chunk written so far is stored (the stage route awaits it before answering). */
  async flush(): Promise<void> {
    if (this.flushing) await this.flushing;
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0);
        const p = this.redis.pipeline();
        for (const chunk of batch) {
          const data: RunStreamChunk = { stage: this.where.stage, attempt: this.where.attempt, chunk };
          p.xadd(this.key, "*", { d: JSON.stringify(data) }, { trim: { type: "MAXLEN", threshold: RUN_STREAM_MAXLEN, comparison: "~" } });
        }
        if (!this.expirySet) p.expire(this.key, RUN_STREAM_TTL_SECONDS);
        await p.exec();
        this.expirySet = true;
      }
    } finally {
      this.flushing = undefined;
    }
  }
}

/** `ctx.stream` for a handler call: the writer is built on the first write only. */
export function lazyRunStream(redis: RedisClient, keys: Keys, where: { runId: string; stage: string; attempt: number }): { stream: RunStream; flush: () => Promise<void> } {
  let writer: RunStreamWriter | undefined;
  return {
    stream: { write: (chunk) => (writer ??= new RunStreamWriter(redis, keys, where)).write(chunk) },
    flush: () => writer?.flush() ?? Promise.resolve(),
  };
}

function parseChunk(fields: Record<string, unknown>): RunStreamChunk | undefined {
  let d = fields.d;
  if (typeof d === "string") {
    try {
      d = JSON.parse(d);
    } catch {
      return undefined;
    }
  }
  const c = d as RunStreamChunk | null;
  return c && typeof c.stage === "string" && typeof c.chunk === "string" ? { stage: c.stage, attempt: Number(c.attempt) || 1, chunk: c.chunk } : undefined;
}

/** Reads the chunks after `afterId` (all with undefined), oldest first, at most `count`. */
export async function readRunOutput(redis: RedisClient, keys: Keys, runId: string, { afterId, count = READ_BATCH }: { afterId?: string; count?: number } = {}): Promise<Array<{ id: string } & RunStreamChunk>> {
  const entries = (await redis.xrange(keys.runOutput(runId), afterId ? `(${afterId}` : "-", "+", count)) as Record<string, Record<string, unknown>>;
  const out: Array<{ id: string } & RunStreamChunk> = [];
  for (const [id, fields] of Object.entries(entries ?? {})) {
    const chunk = parseChunk(fields);
    if (chunk) out.push({ id, ...chunk });
  }
  return out;
}

/**
 * The handler of `GET /v1/runs/:runId/stream`: replays the chunks after
 * `lastEventId`, follows new ones, and sends `end` once the run no longer
 * runs or every stage that wrote has committed its step.
 */
export async function serveRunStream(c: Context<any>, redis: RedisClient, runId: string, lastEventId: string | undefined) {
  const { keys } = settingsFor(c.env);
  const runKey = keys.run(runId);
  if ((await redis.exists(runKey)) === 0) return apiError(c, 404, "not_found", `no run ${runId} (unknown or expired)`);
  c.header("X-Accel-Buffering", "no");
  return streamSSE(c, async (sse) => {
    let aborted = false;
    sse.onAbort(() => {
      aborted = true;
    });
    await sse.write(`retry: ${RETRY_MS}\n: output of run ${runId}\n\n`);
    let cursor = lastEventId;
    const writers = new Set<string>();
    const started = Date.now();
    const send = async (chunks: Array<{ id: string } & RunStreamChunk>) => {
      for (const { id, ...chunk } of chunks) {
        writers.add(chunk.stage);
        await sse.writeSSE({ event: "chunk", id, data: JSON.stringify(chunk) });
        cursor = id;
      }
    };
    for (let pause = 20; !aborted && Date.now() - started < RUN_STREAM_MAX_MS; ) {
      // Both reads leave in one round trip (auto-pipelining over HTTP, one corked write in-process).
      const stages = [...writers];
      const [chunks, state] = await Promise.all([
        readRunOutput(redis, keys, runId, { afterId: cursor }),
        redis.hmget<Record<string, unknown>>(runKey, "status", ...stages.map((s) => `step:${s}`)),
      ]);
      if (chunks.length > 0) {
        await send(chunks);
        pause = 20;
        continue;
      }
      const status = state?.status === undefined || state?.status === null ? undefined : String(state.status);
      const committed = stages.length > 0 && stages.every((s) => state?.[`step:${s}`] !== null && state?.[`step:${s}`] !== undefined);
      if (status === undefined || status !== "running" || committed) {
        // Chunks are stored before their step commits: one last read catches those written since the first.
        let rest = await readRunOutput(redis, keys, runId, { afterId: cursor });
        while (rest.length > 0) {
          await send(rest);
          rest = await readRunOutput(redis, keys, runId, { afterId: cursor });
        }
        await sse.writeSSE({ event: "end", data: JSON.stringify({ runId, status: status ?? "expired", stages: [...writers] }) });
        return;
      }
      await sse.sleep(pause);
      pause = Math.min(pause * 2, 500);
    }
  });
}
