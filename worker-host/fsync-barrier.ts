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
 *
 * On a Valkey Cluster a write is fsynced by the master that took it, so a
 * round runs that pair on every master at once, each on a connection of its
 * own to that master, bumping a mark key whose slot that master owns: the
 * round confirms when every master confirms. Every master must have WAITAOF
 * (or all run `appendfsync always`); otherwise the host refuses to start,
 * naming the masters that cannot.
 */
import type { FsyncBarrier } from "../functions/durable";
import { NotDurableError } from "../functions/durable";
import { parseServerInfo } from "../functions/app";
import type Valkey from "iovalkey";
import { keySlot } from "../functions/key-slot";
import { asCluster, isClusterConnection, withTimeout, type Connection } from "./valkey";

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

/**
 * checkDurability on every master of a cluster: all must have WAITAOF (or all
 * run appendfsync always); otherwise DurabilityUnavailable names the masters
 * that cannot, and why.
 */
export async function checkClusterDurability(conn: Connection): Promise<DurabilityCheck> {
  const masters = asCluster(conn).nodes("master");
  if (masters.length === 0) throw new DurabilityUnavailable("DURABLE_ACCEPT=on: no master of the cluster is known");
  const results = await Promise.all(
    masters.map((node) =>
      checkDurability(node as unknown as Connection).then(
        (check) => ({ at: `${node.options.host}:${node.options.port}`, check, error: undefined as Error | undefined }),
        (error: Error) => ({ at: `${node.options.host}:${node.options.port}`, check: undefined, error }),
      ),
    ),
  );
  const refused = results.filter((r) => r.error);
  if (refused.length > 0) {
    throw new DurabilityUnavailable(
      `DURABLE_ACCEPT=on on a cluster needs every master to confirm its fsync; ${refused.length} of ${masters.length} cannot: ` +
        refused.map((r) => `master ${r.at}: ${r.error!.message.replace(/^DURABLE_ACCEPT=on: /, "")}`).join("; "),
    );
  }
  const modes = new Set(results.map((r) => r.check!.mode));
  if (modes.size > 1) {
    const without = results.filter((r) => r.check!.mode !== "waitaof").map((r) => r.at);
    throw new DurabilityUnavailable(`DURABLE_ACCEPT=on on a cluster: masters ${without.join(", ")} have no WAITAOF (the others do): run one server version on every master (Valkey >= 8 or Redis >= 7.2), or set DURABLE_ACCEPT=off`);
  }
  const first = results[0].check!;
  const summary =
    first.mode === "waitaof"
      ? `ingest waits for the fsync with WAITAOF on each of the ${masters.length} masters (${first.server} ${first.version}, appendfsync ${first.appendfsync}), group-committed, each master on its own connection`
      : `the ${masters.length} masters have no WAITAOF; appendfsync always fsyncs every write before its reply`;
  return { ...first, summary };
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
  /** Cluster mode: the barrier's connection to each master, and its mark key there ("host:port" -> ...). */
  private readonly perMaster = new Map<string, { conn: Valkey; mark: string }>();
  private closed = false;

  constructor(private readonly o: FsyncBarrierOptions) {
    if (o.mode === "waitaof" && !isClusterConnection(o.source)) {
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
    if (isClusterConnection(this.o.source)) return this.runClusterRound();
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

  /** One round on a cluster: INCR a mark the master owns + WAITAOF, on every master at once, each on its own connection. */
  private async runClusterRound(): Promise<void> {
    if (this.closed) throw new NotDurableError("the fsync barrier is closed (the host is stopping)");
    const cluster = asCluster(this.o.source);
    const masters = cluster.nodes("master");
    if (masters.length === 0) {
      this.counts.notConfirmed++;
      throw new NotDurableError("WAITAOF failed: no master known (slot map refreshing)");
    }
    const failures = (
      await Promise.all(
        masters.map(async (node) => {
          const at = `${node.options.host}:${node.options.port}`;
          try {
            const { conn, mark } = this.masterConn(node, at);
            const replies = (await withTimeout(conn.pipeline().incr(mark).call("WAITAOF", "1", "0", String(this.o.timeoutMs)).exec(), this.o.timeoutMs + 1000, "WAITAOF")) as Array<[Error | null, unknown]> | null;
            const [incr, wait] = replies ?? [];
            const error = incr?.[0] ?? wait?.[0];
            if (error || !wait) return `${at}: ${error?.message ?? "no reply"}`;
            return Number((wait[1] as unknown[])[0]) >= 1 ? undefined : `${at}: not confirmed within ${this.o.timeoutMs} ms`;
          } catch (err) {
            this.dropMaster(at);
            return `${at}: ${(err as Error).message}`;
          }
        }),
      )
    ).filter((f): f is string => f !== undefined);
    if (failures.length > 0) {
      this.counts.notConfirmed++;
      throw new NotDurableError(`WAITAOF failed on ${failures.length} of ${masters.length} masters (${failures.join("; ")})`);
    }
  }

  /** The barrier's connection to a master and a mark key of a slot it owns now (re-picked after a failover or reshard). */
  private masterConn(node: Valkey, at: string): { conn: Valkey; mark: string } {
    const cluster = asCluster(this.o.source);
    let entry = this.perMaster.get(at);
    if (entry && (entry.conn.status === "end" || cluster.slots[keySlot(entry.mark)]?.[0] !== at)) {
      this.dropMaster(at);
      entry = undefined;
    }
    if (!entry) {
      let mark: string | undefined;
      for (let i = 0; i < 20_000 && !mark; i++) {
        const candidate = `${this.o.markKey}:{m${i}}`;
        if (cluster.slots[keySlot(candidate)]?.[0] === at) mark = candidate;
      }
      if (!mark) throw new Error("no slot of this master in the slot map");
      const conn = node.duplicate({ connectionName: "edgepipe-fsync", enableAutoPipelining: false, enableOfflineQueue: true, maxRetriesPerRequest: 0, autoResendUnfulfilledCommands: false, retryStrategy: () => null });
      conn.on("error", () => undefined);
      entry = { conn, mark };
      this.perMaster.set(at, entry);
    }
    return entry;
  }

  private dropMaster(at: string): void {
    this.perMaster.get(at)?.conn.disconnect();
    this.perMaster.delete(at);
  }

  /** Closes the barrier's connection (callers still waiting get their round's answer or its failure). */
  async close(): Promise<void> {
    this.closed = true;
    const conns = [...this.perMaster.values()].map((e) => e.conn);
    this.perMaster.clear();
    const conn = this.conn;
    this.conn = undefined;
    await Promise.all(
      [...conns, ...(conn ? [conn] : [])].map(async (c) => {
        try {
          await withTimeout(c.quit(), 500, "quit");
        } catch {
          c.disconnect();
        }
      }),
    );
  }
}

/**
 * The barrier of a host started with DURABLE_ACCEPT=on, after checkDurability.
 * The embedded server is the host's own: when its binary has no WAITAOF it is
 * switched to `appendfsync always` (logged) instead of refusing to start.
 */
export async function startFsyncBarrier(conn: Connection, { markKey, timeoutMs, embedded, log }: { markKey: string; timeoutMs: number; embedded: boolean; log: (line: string) => void }): Promise<ValkeyFsyncBarrier> {
  if (isClusterConnection(conn)) {
    const check = await checkClusterDurability(conn);
    log(`DURABLE_ACCEPT=on: ${check.summary}`);
    return new ValkeyFsyncBarrier({ source: conn, markKey, mode: check.mode, timeoutMs });
  }
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
