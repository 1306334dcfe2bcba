/**
 * DURABLE_ACCEPT on the Node side: the start-up check of what the server can
 * promise, and the group-committing fsync barrier the host hands the app
 * (env.FSYNC_BARRIER) and the REST bridge uses to answer WAITAOF.
 *
 * WAITAOF waits for the fsync of the *calling connection's* last write, so the
 * barrier runs `INCR <mark>` + `WAITAOF 1 0 <timeout>` on a connection of its
 * own: the mark's write comes after every write already answered on any
 * connection, so its fsync covers them. One round covers every caller that
 * arrived before it started; callers that arrive during a round share the
 * next one (group commit), so the cost is one fsync wait per round, not per
 * request, and no shared connection is ever blocked.
 */
import type { FsyncBarrier } from "../functions/durable";
import { NotDurableError } from "../functions/durable";
import { parseServerInfo } from "../functions/app";
import { withTimeout, type Connection } from "./valkey";

/** How the server keeps DURABLE_ACCEPT's promise. */
export type DurabilityMode =
  /** WAITAOF (Valkey >= 8, Redis >= 7.2): ingest waits for the fsync, the AOF may stay `everysec`. */
  | "waitaof"
  /** No WAITAOF, but `appendfsync always`: every write is fsynced before its reply. */
  | "appendfsync-always";

export interface DurabilityCheck {
  mode: DurabilityMode;
  server: string;
  version: string;
  appendfsync: string;
  /** One line for the start-up log. */
  summary: string;
}

/** DURABLE_ACCEPT=on cannot be kept by this server; the message says what to do. */
export class DurabilityUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DurabilityUnavailable";
  }
}

/** Reads `name:value` of an INFO section. */
function infoField(info: string, name: string): string | undefined {
  return new RegExp(`^${name}:(.*)$`, "m").exec(info)?.[1]?.trim();
}

/**
 * What DURABLE_ACCEPT=on can rest on with this server: WAITAOF when the
 * server has the command (COMMAND INFO), else `appendfsync always`; AOF must
 * be on either way. Throws DurabilityUnavailable saying what to change.
 */
export async function checkDurability(conn: Connection): Promise<DurabilityCheck> {
  const [serverInfo, persistence, commandInfo] = await Promise.all([
    conn.info("server"),
    conn.info("persistence"),
    conn.call("COMMAND", "INFO", "WAITAOF") as Promise<unknown[]>,
  ]);
  const { server, version } = parseServerInfo(serverInfo);
  const name = `${server} ${version}`;
  if (infoField(persistence, "aof_enabled") !== "1") {
    throw new DurabilityUnavailable(
      `DURABLE_ACCEPT=on needs the AOF, but ${name} runs with appendonly no: turn it on (CONFIG SET appendonly yes, and in its config file) or set DURABLE_ACCEPT=off`,
    );
  }
  let appendfsync = "unknown";
  try {
    const reply = (await conn.call("CONFIG", "GET", "appendfsync")) as string[];
    appendfsync = String(reply[1] ?? "unknown");
  } catch (err) {
    // CONFIG is often renamed away or denied (ACL) on managed servers; WAITAOF alone decides then.
    appendfsync = `unknown (CONFIG GET appendfsync failed: ${(err as Error).message.split("\n")[0]})`;
  }
  const hasWaitaof = Array.isArray(commandInfo) && commandInfo[0] != null;
  if (hasWaitaof && appendfsync === "no") {
    throw new DurabilityUnavailable(
      `DURABLE_ACCEPT=on: ${name} runs with appendfsync no, so it never fsyncs by itself and WAITAOF would never confirm: set appendfsync everysec or always (CONFIG SET appendfsync everysec), or DURABLE_ACCEPT=off`,
    );
  }
  if (hasWaitaof) {
    return { mode: "waitaof", server, version, appendfsync, summary: `ingest waits for the fsync with WAITAOF (${name}, appendfsync ${appendfsync}), group-committed` };
  }
  if (appendfsync === "always") {
    return { mode: "appendfsync-always", server, version, appendfsync, summary: `${name} has no WAITAOF; appendfsync always fsyncs every write before its reply` };
  }
  throw new DurabilityUnavailable(
    `DURABLE_ACCEPT=on: ${name} has no WAITAOF (it needs Valkey >= 8 or Redis >= 7.2) and its appendfsync is ${appendfsync}, ` +
      "so a 202 could not wait for the fsync. Use a newer server, or set appendfsync always on this one " +
      "(CONFIG SET appendfsync always, and in its config file; every write then waits for the disk), or set DURABLE_ACCEPT=off",
  );
}

interface Round {
  promise: Promise<void>;
  resolve(): void;
  reject(err: Error): void;
}

function newRound(): Round {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

export interface FsyncBarrierOptions {
  /** A connection to duplicate (the barrier's own connection is opened from it). */
  source: Connection;
  /** The key the barrier bumps before each WAITAOF (keys.fsyncMark()). */
  markKey: string;
  mode: DurabilityMode;
  /** WAITAOF timeout; a round that does not confirm within it rejects with NotDurableError. */
  timeoutMs: number;
}

/** The group-committing barrier (see the file comment). */
export class ValkeyFsyncBarrier implements FsyncBarrier {
  /** Rounds run and callers served, for the bench and tests. */
  readonly counts = { rounds: 0, waits: 0, notConfirmed: 0 };
  private conn: Connection | undefined;
  private running: Round | undefined;
  private queued: Round | undefined;

  constructor(private readonly o: FsyncBarrierOptions) {
    if (o.mode === "waitaof") {
      this.conn = o.source.duplicate({ connectionName: "edgepipe-fsync", enableAutoPipelining: false, maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false });
      this.conn.on("error", () => undefined);
    }
  }

  wait(): Promise<void> {
    this.counts.waits++;
    // appendfsync always: the write was fsynced before the server answered it.
    if (this.o.mode === "appendfsync-always") return Promise.resolve();
    if (!this.running) {
      const round = newRound();
      this.start(round);
      return round.promise;
    }
    // A round is in flight; its mark may predate this caller's writes: join the next.
    this.queued ??= newRound();
    return this.queued.promise;
  }

  private start(round: Round): void {
    this.running = round;
    this.counts.rounds++;
    this.runRound().then(round.resolve, round.reject).finally(() => {
      this.running = undefined;
      const next = this.queued;
      this.queued = undefined;
      if (next) this.start(next);
    });
  }

  private async runRound(): Promise<void> {
    const conn = this.conn;
    if (!conn) throw new NotDurableError("the fsync barrier is closed (the host is stopping)");
    let replies: Array<[Error | null, unknown]> | null;
    try {
      replies = (await withTimeout(
        conn.pipeline().incr(this.o.markKey).call("WAITAOF", "1", "0", String(this.o.timeoutMs)).exec(),
        this.o.timeoutMs + 1000,
        "WAITAOF",
      )) as Array<[Error | null, unknown]> | null;
    } catch (err) {
      this.counts.notConfirmed++;
      throw new NotDurableError(`WAITAOF failed: ${(err as Error).message}`);
    }
    const [incr, wait] = replies ?? [];
    const error = incr?.[0] ?? wait?.[0];
    if (error || !wait) {
      this.counts.notConfirmed++;
      throw new NotDurableError(`WAITAOF failed: ${error?.message ?? "no reply"}`);
    }
    const local = Number((wait[1] as unknown[])[0]);
    if (local < 1) {
      this.counts.notConfirmed++;
      throw new NotDurableError(`the server did not confirm the fsync within ${this.o.timeoutMs} ms`);
    }
  }

  /** Closes the barrier's connection (callers still waiting get their round's answer or its failure). */
  async close(): Promise<void> {
    const conn = this.conn;
    this.conn = undefined;
    if (!conn) return;
    try {
      await withTimeout(conn.quit(), 500, "quit");
    } catch {
      conn.disconnect();
    }
  }
}

/**
 * The barrier of a host started with DURABLE_ACCEPT=on, after checkDurability.
 * The embedded server is the host's own: when its binary has no WAITAOF it is
 * switched to `appendfsync always` (logged) instead of refusing to start.
 */
export async function startFsyncBarrier(conn: Connection, { markKey, timeoutMs, embedded, log }: { markKey: string; timeoutMs: number; embedded: boolean; log: (line: string) => void }): Promise<ValkeyFsyncBarrier> {
  let check: DurabilityCheck;
  try {
    check = await checkDurability(conn);
  } catch (err) {
    if (!(err instanceof DurabilityUnavailable) || !embedded || /appendonly no/.test(err.message)) throw err;
    await conn.call("CONFIG", "SET", "appendfsync", "always");
    log("DURABLE_ACCEPT=on: the embedded server has no WAITAOF (Valkey >= 8 / Redis >= 7.2 have it), so it now runs with appendfsync always: every write waits for the disk");
    check = await checkDurability(conn);
  }
  log(`DURABLE_ACCEPT=on: ${check.summary}`);
  return new ValkeyFsyncBarrier({ source: conn, markKey, mode: check.mode, timeoutMs });
}
