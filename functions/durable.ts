/**
 * Durable acceptance (DURABLE_ACCEPT=on): ingest answers 202 only once the
 * server confirms that the runs it wrote reached the disk. On the Node host
 * the host hands the app a group-committing fsync barrier (env.FSYNC_BARRIER:
 * one WAITAOF covers every ingest in flight); on Workers the app asks its
 * REST endpoint for `WAITAOF 1 0 <timeout>` (the local REST bridge answers it
 * with the same barrier). Web APIs only.
 */
import type { AppEnv } from "./redis";

/** What the Node host injects as env.FSYNC_BARRIER. */
export interface FsyncBarrier {
  /** Resolves once every write acknowledged before the call is fsynced; rejects with NotDurableError otherwise. */
  wait(): Promise<void>;
}

/**
 * The server did not confirm the fsync in time (or cannot): the runs were
 * written and may well exist and run, but a server crash now could lose them.
 * Ingest answers 503 not_durable with their run ids.
 */
export class NotDurableError extends Error {
  runIds: string[] = [];
  constructor(reason: string) {
    super(reason);
    this.name = "NotDurableError";
  }
}

/** The app-facing message of a 503 not_durable. */
export function notDurableMessage(err: NotDurableError): string {
  return (
    `the ${err.runIds.length} run(s) were written but their fsync was not confirmed (${err.message}): ` +
    "they may exist and run, or be lost if the server crashes now; check GET /v1/runs/:runId for the runIds before sending them again"
  );
}

/**
 * Waits for the fsync of what this request wrote (DURABLE_ACCEPT=on); tags a
 * NotDurableError with the run ids. A no-op when `on` is false.
 */
export async function acceptDurably(env: AppEnv | undefined, { on, timeoutMs }: { on: boolean; timeoutMs: number }, runIds: string[]): Promise<void> {
  if (!on) return;
  try {
    await waitForFsync(env ?? {}, timeoutMs);
  } catch (err) {
    const notDurable = err instanceof NotDurableError ? err : new NotDurableError((err as Error).message);
    notDurable.runIds = runIds;
    throw notDurable;
  }
}

async function waitForFsync(env: AppEnv, timeoutMs: number): Promise<void> {
  const barrier = env.FSYNC_BARRIER as FsyncBarrier | undefined;
  if (barrier) return barrier.wait();
  if (env.REDIS) throw new NotDurableError("DURABLE_ACCEPT=on but the host set up no fsync barrier (start it with DURABLE_ACCEPT=on)");
  if (!env.UPSTASH_REDIS_REST_URL || !env.UPSTASH_REDIS_REST_TOKEN) throw new NotDurableError("DURABLE_ACCEPT=on needs UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN");
  // The REST endpoint runs WAITAOF after the writes it has already answered (the bridge group-commits it).
  const res = await fetch(env.UPSTASH_REDIS_REST_URL, {
    method: "POST",
    headers: { authorization: `Bearer ${env.UPSTASH_REDIS_REST_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify(["WAITAOF", "1", "0", String(timeoutMs)]),
    signal: AbortSignal.timeout(timeoutMs + 2000),
  }).catch((err: Error) => {
    throw new NotDurableError(`WAITAOF through ${new URL(env.UPSTASH_REDIS_REST_URL!).host} failed: ${err.message}`);
  });
  const body = (await res.json().catch(() => ({}))) as { result?: unknown; error?: string };
  if (!Array.isArray(body.result)) throw new NotDurableError(`the REST endpoint answered WAITAOF with ${res.status}: ${body.error ?? "no result"}`);
  if (Number(body.result[0]) < 1) throw new NotDurableError(`the server did not confirm the fsync within ${timeoutMs} ms`);
}
