/**
 * One stage's consumer: reads its streams with XREADGROUP on a dedicated
 * blocking connection, dispatches batches through an Invoker, and commits
 * each batch with one Lua call per partition (commit-stage.lua). Failures are
 * scheduled for redelivery with backoff (retry-later.lua) or dead-lettered
 * (dead-letter.lua); idle entries of lost consumers are reclaimed
 * (reclaim-idle.lua).
 *
 * Life cycle: `run()` starts the read and reclaim loops, `close()` stops
 * reading (CLIENT UNBLOCK), waits for in-flight batches to commit, and closes
 * its own connection, all within a deadline.
 *
 * Nothing waits without a bound, whatever the connections do: a blocking
 * read that has not settled after blockMs + watchdogGraceMs is abandoned
 * (its promise rejected by the watchdog) and the blocking connection
 * replaced; a failed read is retried with backoff on a fresh connection; a
 * script call that fails for the connection is retried for up to
 * visibilityMs or until the close deadline, after which its entries stay
 * pending and are reclaimed. StageProgress records the last
 * progress for /health.
 */
import { Envelope, checkEnvelope } from "../functions/envelope";
import type { StageItemResult } from "../functions/envelope";
import type { Keys } from "../functions/keys";
import { latencyField } from "../functions/stats";
import type { FlowControl, FlowSlots, FlowTicket } from "./flow-control";
import { parkRuns } from "./park-runs";
import { isTransportError, type Invoker } from "./invoker";
import type { HopOutcome, HopTracer } from "./tracing";
import { StageProgress, type StageProgressSnapshot } from "./stage-progress";
import { hashTag, keySlot } from "../functions/key-slot";
import { asCluster, encodeCommand, isClusterConnection, isConnectionError, openBlockingConnection, runScript, sendAbandonable, withTimeout, type AbandonableCommand, type Connection } from "./valkey";
import { commandConnectionTo, openBlockingConnectionToSlot } from "./data-store";

export interface StageWorkerOptions {
  stage: string;
  keys: Keys;
  /** Shared connection for commands (commits, claims). */
  conn: Connection;
  invoker: Invoker;
  consumer: string;
  /** Entries per XREADGROUP and per handler call. */
  batchSize?: number;
  /** Batches in flight at once. */
  concurrency?: number;
  blockMs?: number;
  /** Pending entries idle longer than this are reclaimed by any consumer. */
  visibilityMs?: number;
  /** Deliveries (PEL count) after which an entry is dead-lettered. */
  maxDeliveries?: number;
  /** First retry delay; doubles per attempt up to maxBackoffMs, with jitter. */
  backoffMs?: number;
  maxBackoffMs?: number;
  reclaimIntervalMs?: number;
  checkpointTtlSeconds?: number;
  logMaxLen?: number;
  deadLetterMaxLen?: number;
  /** A blocking read that has not settled after blockMs + this is abandoned and its connection replaced. */
  watchdogGraceMs?: number;
  /** close() gives in-flight batches this long to commit; what is left stays pending for reclaim. */
  closeTimeoutMs?: number;
  /**
   * A batch whose dispatch got no answer at all (StageTransportError: the
   * stage endpoint refused, reset or timed out) is retried in place after
   * this delay, doubling up to dispatchRetryMaxMs, until the endpoint answers
   * or close(): no delivery attempt is used, its leases are kept.
   */
  dispatchRetryMs?: number;
  dispatchRetryMaxMs?: number;
  /** Timeouts (the request may have reached a handler that hangs) are retried in place this many times, then count as failures. */
  dispatchTimeoutRetries?: number;
  log?: (line: string) => void;
  /** The stage's flow limits (flow-control.ts); absent for a stage without limits, which then pays nothing for them. */
  flow?: FlowControl;
  /** OpenTelemetry hop spans (tracing.ts); absent when tracing is off, which then costs nothing. */
  tracer?: HopTracer;
  /** This stage is the pipeline's entry (its first delivery of a run also emits the run's ingest span). */
  entry?: boolean;
}

/** A stream entry as read from Valkey. */
export interface RawEntry {
  partition: number;
  id: string;
  fields: string[];
  deliveries: number;
}

interface ParsedEntry extends RawEntry {
  raw: string;
  envelope?: Envelope;
  /** Why the entry is malformed (dead-lettered at once). */
  invalid?: string;
  /** Room a flow limit reserved for this entry when it readmitted it (field "r"). */
  reservation?: string;
}

/**
 * Deliveries an entry had before flow control parked it (field "d" of a
 * readmitted entry), so waiting never costs an attempt: 0 for any other entry.
 */
function priorDeliveries(fields: string[]): number {
  for (let i = 2; i < fields.length; i += 2) if (fields[i] === "d") return Number(fields[i + 1]) || 0;
  return 0;
}

/** A batch's flow ticket on its way through dispatch and commit. */
interface FlowSettle {
  ticket: FlowTicket;
  /** Handler results, in the order of the ticket's entries. */
  results: StageItemResult[];
  /** The commit freed the batch's concurrency and lane slots. */
  slotsFreed: boolean;
}

/** A batch given up because the worker closed (its entries stay pending). */
class ClosingError extends Error {}

type XReadReply = Array<[string, Array<[string, string[]]>]> | null;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves true when `p` settles within `ms`, false when it does not (it is left running). */
function settlesWithin(p: Promise<unknown> | undefined, ms: number): Promise<boolean> {
  if (!p) return Promise.resolve(true);
  return withTimeout(p.then(() => true, () => true), Math.max(0, ms), "settling").catch(() => false);
}

/** The server answered the command with an error: the connection itself is fine. */
const isReplyError = (err: unknown) => err instanceof Error && err.name === "ReplyError";

/**
 * One blocking read loop: on one server a single reader covers every
 * partition (one XREADGROUP over all streams); on a cluster each partition
 * has its own (XREADGROUP cannot span slots), connected to the master that
 * owns the partition's slot and moved when that changes.
 */
interface Reader {
  partitions: number[];
  streams: string[];
  /** Cluster: the slot of its partition's keys (its connection goes to that slot's master). */
  slot?: number;
  conn?: Connection;
  /** CLIENT ID of `conn`, for CLIENT UNBLOCK. */
  id?: number;
  /** Cluster: host:port of the master `conn` reaches. */
  node?: string;
  /** The blocking read outstanding now (the watchdog and close() may abandon it). */
  pending?: AbandonableCommand;
  /** One timer per reader, refreshed per read (see readOnce). */
  watchdog?: ReturnType<typeof setTimeout>;
}

/** Health of one stage worker, for the host's /health. */
export interface StageHealth extends StageProgressSnapshot {
  /** Batches read and not yet committed. */
  inFlight: number;
  /** Every batch slot is taken (the loop waits for a handler, not for the server). */
  saturated: boolean;
  /** No progress for this long means stalled (when work waits). */
  stallAfterMs: number;
  /** The stage endpoint has given no answer for this long (batches wait and retry in place); absent when it answers. */
  dispatchUnavailableForMs?: number;
  /** Why, the last time. */
  dispatchError?: string;
  /** Dispatches that got no answer (each retried in place, no delivery attempt used), since start. */
  transportFailures: number;
}

/**
 * Per-batch key list for a script call: each distinct key once, referenced by
 * 1-based index. A small table (the usual batch of one or two entries at low
 * load) is searched in place; a Map is built only once it grows.
 */
class KeyTable {
  readonly keys: string[];
  private index: Map<string, number> | undefined;
  constructor(fixed: readonly string[]) {
    this.keys = fixed.slice();
  }
  ref(key: string): number {
    const keys = this.keys;
    if (this.index === undefined) {
      for (let i = 0; i < keys.length; i++) if (keys[i] === key) return i + 1;
      keys.push(key);
      if (keys.length > 16) {
        this.index = new Map();
        for (let i = 0; i < keys.length; i++) this.index.set(keys[i], i + 1);
      }
      return keys.length;
    }
    let i = this.index.get(key);
    if (i === undefined) {
      keys.push(key);
      i = keys.length;
      this.index.set(key, i);
    }
    return i;
  }
}

export class StageWorker {
  readonly stage: string;
  /** Checkpoint field of this stage's step (a branch adds `#branch`). */
  private readonly plainStepField: string;
  private readonly o: Required<Omit<StageWorkerOptions, "log" | "flow" | "tracer" | "entry">> & { log: (line: string) => void; tracer?: HopTracer; entry?: boolean };
  private readonly flow: FlowControl | undefined;
  /** The blocking read loops (one, or one per partition on a cluster). */
  private readers: Reader[] = [];
  private running = false;
  /** Set by close(): connection retries stop at this time. */
  private closeDeadline: number | undefined;
  private readLoop: Promise<void> | undefined;
  private reclaimLoop: Promise<void> | undefined;
  /** Batches read and not yet committed (at most `concurrency`; close() waits for them). */
  private readonly inFlight = new Set<Promise<void>>();
  private readonly cursors = new Map<number, string>();
  /** Wakes every pause() early (close() calls them). */
  private readonly sleepers = new Set<() => void>();
  readonly progress: StageProgress;
  /** Batches whose handlers are running (read time, entries): their leases are extended. */
  private readonly leases = new Set<{ since: number; entries: ParsedEntry[] }>();
  private leaseTimer: ReturnType<typeof setInterval> | undefined;
  private extending = false;
  /** Per partition: the fixed keys of a commit (input stream, stats, last errors). */
  private readonly commitKeys: string[][] = [];
  /** Dispatch outage state (StageTransportError), for /health and /metrics. */
  private readonly dispatch = { failures: 0, since: undefined as number | undefined, error: undefined as string | undefined };
  /** The partition whose commits can free flow slots in the same call (its tag is the limiters'), if any. */
  private readonly flowFoldPartition: number | undefined;

  constructor(options: StageWorkerOptions) {
    this.stage = options.stage;
    this.plainStepField = `step:${options.stage}`;
    this.o = {
      batchSize: 100,
      concurrency: 2,
      blockMs: 1000,
      visibilityMs: 30_000,
      maxDeliveries: 5,
      backoffMs: 1000,
      maxBackoffMs: 60_000,
      reclaimIntervalMs: 1000,
      checkpointTtlSeconds: 7 * 24 * 3600,
      logMaxLen: 100,
      deadLetterMaxLen: 100_000,
      watchdogGraceMs: 5000,
      closeTimeoutMs: 2500,
      dispatchRetryMs: 250,
      dispatchRetryMaxMs: 2000,
      dispatchTimeoutRetries: 2,
      log: () => {},
      ...options,
    };
    this.flow = options.flow;
    if (this.flow?.slotLimiters) {
      const tag = hashTag(this.o.keys.flowLimiter(this.stage, "concurrency", "x"));
      const p = this.o.keys.allPartitions.find((q) => hashTag(this.o.keys.stream(this.stage, q)) === tag);
      this.flowFoldPartition = p;
    }
    this.progress = new StageProgress(this.stage, this.o.log);
  }

  private get streams(): string[] {
    return this.o.keys.allPartitions.map((p) => this.o.keys.stream(this.stage, p));
  }

  /** Creates the consumer group on every partition stream (from id 0, MKSTREAM). */
  async ensureGroups(): Promise<void> {
    const group = this.o.keys.group(this.stage);
    for (const stream of this.streams) {
      try {
        await this.o.conn.xgroup("CREATE", stream, group, "0", "MKSTREAM");
      } catch (err) {
        if (!(err instanceof Error) || !err.message.startsWith("BUSYGROUP")) throw err;
      }
    }
  }

  /** Starts the read and reclaim loops. */
  async run(): Promise<void> {
    if (this.running) return;
    await this.ensureGroups();
    const streams = this.streams;
    this.readers = isClusterConnection(this.o.conn)
      ? streams.map((stream, p) => ({ partitions: [p], streams: [stream], slot: keySlot(stream) }))
      : [{ partitions: this.o.keys.allPartitions, streams }];
    await Promise.all(this.readers.map((r) => this.openBlocking(r)));
    this.running = true;
    this.closeDeadline = undefined;
    this.readLoop = this.readers.length === 1 ? this.mainLoop(this.readers[0]) : Promise.all(this.readers.map((r) => this.mainLoop(r))).then(() => undefined);
    this.reclaimLoop = this.reclaimIdleLoop();
    this.flow?.start();
    // Leases of batches whose handlers outlast a third of the visibility timeout are extended.
    this.leaseTimer = setInterval(() => void this.extendLeases(), this.leaseEveryMs);
    this.leaseTimer.unref?.();
  }

  /**
   * Stops reading and lets in-flight batches commit, within closeTimeoutMs
   * (or by `deadline`, epoch ms, when that is sooner): with the server
   * reachable they commit; otherwise (or when a handler runs longer) their
   * entries stay pending and are reclaimed after the visibility timeout, by
   * this host's next run or by another host. Every wait here is bounded by
   * that deadline: the unblock, the read loop, the reclaim loop, in-flight
   * handlers and their commits (whose connection retries stop at it too),
   * the flow readmit loop.
   */
  async close({ deadline: given }: { deadline?: number } = {}): Promise<void> {
    if (!this.running) return;
    this.running = false;
    const deadline = Math.min(Date.now() + this.o.closeTimeoutMs, given ?? Infinity);
    this.closeDeadline = deadline;
    const left = (cap = Infinity) => Math.max(0, Math.min(cap, deadline - Date.now()));
    for (const wake of [...this.sleepers]) wake();
    // CLIENT UNBLOCK ends the read with no entries, so nothing is left delivered and unread;
    // when the server does not answer quickly, the read is abandoned instead.
    await Promise.all(this.readers.map((r) => this.unblock(r, left(500))));
    if (!(await settlesWithin(this.readLoop, left(500)))) for (const r of this.readers) r.pending?.reject(new Error("the stage worker is closing"));
    if (!(await settlesWithin(this.readLoop, left()))) this.o.log(`[${this.stage}] read loop still waiting at close (a batch slot never freed)`);
    if (!(await settlesWithin(this.reclaimLoop, left()))) this.o.log(`[${this.stage}] reclaim loop still busy at close`);
    if (!(await settlesWithin(Promise.all(this.inFlight), left()))) {
      this.o.log(`[${this.stage}] close: ${this.inFlight.size} batch(es) not committed by the close deadline; their entries stay pending and are reclaimed after the visibility timeout`);
    }
    if (this.flow && !(await settlesWithin(this.flow.stop(), left()))) this.o.log(`[${this.stage}] flow readmit loop still busy at close`);
    clearInterval(this.leaseTimer);
    for (const r of this.readers) {
      clearTimeout(r.watchdog);
      r.watchdog = undefined;
      this.dropBlocking(r);
    }
  }

  /** Ends a reader's outstanding read with no entries (CLIENT UNBLOCK on its server), so nothing is left delivered and unread. */
  private async unblock(r: Reader, ms: number): Promise<void> {
    if (!r.pending || r.id === undefined) return;
    const via = r.node === undefined ? this.o.conn : commandConnectionTo(asCluster(this.o.conn), r.node);
    if (!via) return;
    try {
      await withTimeout(via.client("UNBLOCK", r.id), ms, "CLIENT UNBLOCK");
    } catch (err) {
      this.o.log(`[${this.stage}] unblock failed: ${(err as Error).message}`);
    }
  }

  /** Progress and load of this worker, for /health. */
  health(): StageHealth {
    return {
      ...this.progress.snapshot(),
      inFlight: this.inFlight.size,
      saturated: this.inFlight.size >= this.o.concurrency,
      stallAfterMs: 2 * (this.o.blockMs + this.o.watchdogGraceMs),
      transportFailures: this.dispatch.failures,
      ...(this.dispatch.since !== undefined ? { dispatchUnavailableForMs: Date.now() - this.dispatch.since, dispatchError: this.dispatch.error } : {}),
    };
  }

  private async openBlocking(r: Reader): Promise<void> {
    this.dropBlocking(r);
    const options = { name: `${this.o.consumer}:${this.stage}:block${r.slot === undefined ? "" : `:p${r.partitions[0]}`}`, timeoutMs: this.o.blockMs + this.o.watchdogGraceMs };
    if (r.slot === undefined) {
      const { conn, id } = await openBlockingConnection(this.o.conn, options);
      r.conn = conn;
      r.id = id;
    } else {
      // The master that owns the partition now (a failover or resharding moves it).
      const { conn, id, node } = await openBlockingConnectionToSlot(this.o.conn, r.slot, options);
      r.conn = conn;
      r.id = id;
      r.node = node;
    }
  }

  /** Closes a reader's blocking connection for good (its outstanding read, if any, fails). */
  private dropBlocking(r: Reader): void {
    const blocking = r.conn;
    r.conn = undefined;
    r.id = undefined;
    r.node = undefined;
    blocking?.disconnect();
  }

  /** Waits `ms`, or less when close() is called. */
  private pause(ms: number): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }

  private async mainLoop(reader: Reader): Promise<void> {
    const group = this.o.keys.group(this.stage);
    const { streams, partitions } = reader;
    const ids = streams.map(() => ">");
    let failures = 0;
    // The read never changes: its RESP bytes are built once.
    const args: Array<string | number> = ["GROUP", group, this.o.consumer, "COUNT", this.o.batchSize, "BLOCK", this.o.blockMs, "STREAMS", ...streams, ...ids];
    const bytes = encodeCommand("xreadgroup", args);
    while (this.running) {
      if (this.inFlight.size >= this.o.concurrency) {
        await Promise.race(this.inFlight);
        continue;
      }
      let reply: XReadReply;
      try {
        reply = await this.readOnce(reader, bytes);
        failures = 0;
      } catch (err) {
        if (!this.running) break;
        failures++;
        this.progress.failed("read", err);
        // The group is gone (a server restarted without its data): create it again.
        if (isReplyError(err) && (err as Error).message.startsWith("NOGROUP")) await this.ensureGroups().catch(() => undefined);
        // A connection that failed or was abandoned is replaced; an error reply leaves it be, except on a
        // cluster, where it means the slot moved (MOVED, CLUSTERDOWN, UNBLOCKED): reopen at its owner.
        else if (!isReplyError(err) || reader.slot !== undefined) this.dropBlocking(reader);
        await this.pause(Math.min(50 * 2 ** failures, 1000));
        continue;
      }
      this.progress.advanced();
      if (!reply) continue;
      const entries: RawEntry[] = [];
      for (let s = 0; s < reply.length; s++) {
        const partition = streams.length === 1 ? partitions[0] : partitions[streams.indexOf(reply[s][0])];
        const list = reply[s][1];
        for (let k = 0; k < list.length; k++) entries.push({ partition, id: list[k][0], fields: list[k][1], deliveries: 1 });
      }
      if (entries.length > 0) this.track(this.processBatch(entries));
    }
  }

  /**
   * One blocking XREADGROUP, on a fresh blocking connection when the last one
   * was dropped. One watchdog timer per worker, refreshed per read: if it
   * fires while a read is still outstanding, that read did not settle in
   * blockMs + grace (a frozen network path, a paused server), so it is
   * abandoned (rejected here, whatever state the connection is in) and the
   * connection dropped; the loop opens a new one.
   */
  private async readOnce(r: Reader, bytes: Buffer): Promise<XReadReply> {
    if (!r.conn) await this.openBlocking(r);
    const read = sendAbandonable(r.conn!, "xreadgroup", bytes);
    r.pending = read;
    if (r.watchdog) r.watchdog.refresh();
    else {
      r.watchdog = setTimeout(() => this.onWatchdog(r), this.o.blockMs + this.o.watchdogGraceMs);
      r.watchdog.unref?.();
    }
    try {
      return (await read.promise) as XReadReply;
    } finally {
      r.pending = undefined;
    }
  }

  private onWatchdog(r: Reader): void {
    const read = r.pending;
    if (!read || !this.running) return;
    read.reject(new Error(`blocking read did not settle in ${this.o.blockMs + this.o.watchdogGraceMs} ms; abandoned, reconnecting`));
    this.dropBlocking(r);
  }

  private track(p: Promise<void>): void {
    const tracked = p
      .catch((err) => {
        if (isConnectionError(err) || err instanceof ClosingError) this.o.log(`[${this.stage}] batch not committed (${(err as Error).message}); its entries stay pending and are reclaimed after the visibility timeout`);
        else this.o.log(`[${this.stage}] batch failed: ${(err as Error).stack ?? err}`);
      })
      .finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  private get leaseEveryMs(): number {
    return Math.max(50, Math.floor(this.o.visibilityMs / 3));
  }

  /**
   * A handler still running a third of the visibility timeout after its batch
   * was read keeps its entries: their idle time is reset (extend-lease.lua,
   * only for entries this consumer still owns), so another consumer's reclaim
   * loop does not start the same work a second time while it runs.
   */
  async extendLeases(): Promise<number> {
    if (this.extending || this.leases.size === 0) return 0;
    this.extending = true;
    let extended = 0;
    try {
      const due = Date.now() - this.leaseEveryMs;
      const byPartition = new Map<number, string[]>();
      for (const lease of this.leases) {
        if (lease.since > due) continue;
        for (const e of lease.entries) {
          let ids = byPartition.get(e.partition);
          if (!ids) byPartition.set(e.partition, (ids = []));
          ids.push(e.id);
        }
      }
      const group = this.o.keys.group(this.stage);
      for (const [p, ids] of byPartition) {
        extended += Number(await runScript(this.o.conn, "extendLease", [this.o.keys.stream(this.stage, p)], [group, this.o.consumer, ...ids]));
      }
    } catch (err) {
      this.o.log(`[${this.stage}] extending leases failed: ${(err as Error).message}`);
    } finally {
      this.extending = false;
    }
    return extended;
  }

  private async reclaimIdleLoop(): Promise<void> {
    while (this.running) {
      await this.pause(this.o.reclaimIntervalMs);
      if (!this.running) break;
      try {
        await this.reclaimIdle();
      } catch (err) {
        if (isConnectionError(err)) this.progress.failed("reclaim", err);
        else this.o.log(`[${this.stage}] reclaim failed: ${(err as Error).message}`);
      }
    }
  }

  /** Claims entries idle past the visibility timeout; dead-letters those past maxDeliveries. */
  async reclaimIdle(): Promise<number> {
    const group = this.o.keys.group(this.stage);
    let claimed = 0;
    for (const p of this.o.keys.allPartitions) {
      const stream = this.o.keys.stream(this.stage, p);
      const [next, list] = await runScript<[string, Array<[string, string[], number]>]>(
        this.o.conn, "reclaimIdle", [stream], [group, this.o.consumer, this.o.visibilityMs, this.cursors.get(p) ?? "0-0", this.o.batchSize],
      );
      this.cursors.set(p, next);
      if (list.length === 0) continue;
      claimed += list.length;
      const entries = list.map(([id, fields, deliveries]) => ({ partition: p, id, fields: fields ?? [], deliveries: Number(deliveries) + priorDeliveries(fields ?? []) }));
      const exhausted = entries.filter((e) => e.deliveries > this.o.maxDeliveries);
      const retry = entries.filter((e) => e.deliveries <= this.o.maxDeliveries);
      if (exhausted.length > 0) {
        await this.deadLetter(exhausted.map((e) => ({ entry: this.parse(e), error: "", handlerFailure: false })));
      }
      if (retry.length > 0) await this.processBatch(retry);
    }
    return claimed;
  }

  private parse(entry: RawEntry): ParsedEntry {
    const fields = entry.fields;
    let raw: string | undefined;
    for (let i = 0; i < fields.length; i += 2) if (fields[i] === "e") raw = fields[i + 1];
    // Entries put back by flow control carry their earlier deliveries and reservation.
    let reservation: string | undefined;
    if (fields.length > 2) {
      for (let i = 2; i < fields.length; i += 2) if (fields[i] === "r") reservation = fields[i + 1];
      if (entry.deliveries === 1) entry = { ...entry, deliveries: 1 + priorDeliveries(fields) };
    }
    if (raw === undefined) {
      const asObject: Record<string, string> = {};
      for (let i = 0; i < fields.length; i += 2) asObject[fields[i]] = fields[i + 1];
      return { ...entry, raw: JSON.stringify(asObject), invalid: "stream entry has no 'e' (envelope) field" };
    }
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch (err) {
      return { ...entry, raw, invalid: `envelope is not valid JSON: ${(err as Error).message}` };
    }
    // Fast hand-written check first; zod only runs to explain a rejection.
    const envelope = checkEnvelope(json);
    if (!envelope) {
      const parsed = Envelope.safeParse(json);
      const detail = parsed.success ? "rejected by the envelope check" : parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
      return { ...entry, raw, invalid: `envelope failed validation: ${detail}` };
    }
    if (envelope.stage !== this.stage) {
      return { ...entry, raw, invalid: `envelope for stage ${envelope.stage} found on the ${this.stage} stream` };
    }
    if (this.o.keys.partitions > 1 && this.o.keys.partitionOf(envelope.runId) !== entry.partition) {
      return { ...entry, raw, invalid: `run ${envelope.runId} belongs to partition ${this.o.keys.partitionOf(envelope.runId)}, found on partition ${entry.partition}` };
    }
    envelope.attempt = entry.deliveries;
    if (reservation !== undefined) return { partition: entry.partition, id: entry.id, fields: entry.fields, deliveries: entry.deliveries, raw, envelope, reservation };
    return { partition: entry.partition, id: entry.id, fields: entry.fields, deliveries: entry.deliveries, raw, envelope };
  }

  /**
   * Why outputs cannot be committed with their input, or undefined: an output
   * for a run of another partition (only a remote handler can answer one) would
   * make the commit touch two partitions, two cluster slots. Dead-lettered with
   * this reason instead, on one server too, so both give the same outcome.
   */
  private foreignOutput(entry: ParsedEntry, outputs: readonly Envelope[]): string | undefined {
    for (let o = 0; o < outputs.length; o++) {
      const q = this.o.keys.partitionOf(outputs[o].runId);
      if (q !== entry.partition) {
        return `handler output for run ${outputs[o].runId} (partition ${q}) cannot be committed with run ${entry.envelope!.runId} (partition ${entry.partition}): one commit touches one partition (one cluster slot)`;
      }
    }
    return undefined;
  }

  private stepField(envelope: Envelope): string {
    return envelope.branch ? `step:${this.stage}#${envelope.branch}` : this.plainStepField;
  }

  /** Parses, dispatches and commits one batch. */
  async processBatch(entries: RawEntry[]): Promise<void> {
    const malformed: ParsedEntry[] = [];
    let valid: ParsedEntry[] = [];
    let redelivered: ParsedEntry[] | undefined;
    for (let k = 0; k < entries.length; k++) {
      const e = this.parse(entries[k]);
      if (e.invalid) malformed.push(e);
      else if (e.envelope) {
        valid.push(e);
        if (e.deliveries > 1) (redelivered ??= []).push(e);
      }
    }

    // A redelivered entry whose step is already checkpointed is acked without running the handler.
    const alreadyDone: ParsedEntry[] = [];
    if (redelivered) {
      let replies: Array<[Error | null, unknown]> = [];
      await this.withConnectionRetry("checkpoint lookup", async () => {
        const pipe = this.o.conn.pipeline();
        for (const e of redelivered) pipe.hexists(this.o.keys.run(e.envelope!.runId), this.stepField(e.envelope!));
        replies = (await pipe.exec()) ?? [];
        const failed = replies.find(([err]) => err);
        if (failed) throw failed[0];
      });
      const done = new Set(redelivered.filter((_, i) => replies[i]?.[1] === 1));
      alreadyDone.push(...done);
      valid = valid.filter((e) => !done.has(e));
    }

    // Entries over a flow limit are parked here (acked into waiting lists); the rest go on.
    let ticket: FlowTicket | undefined;
    if (this.flow && valid.length > 0) {
      // Not retried here: on a connection error the batch stays pending and is reclaimed.
      const gate = await this.flow.admit(valid);
      valid = gate.admitted as ParsedEntry[];
      ticket = gate.ticket;
    }
    if (!ticket) return this.dispatchAndSettle(malformed, alreadyDone, valid);
    const settle: FlowSettle = { ticket, results: [], slotsFreed: false };
    try {
      await this.dispatchAndSettle(malformed, alreadyDone, valid, settle);
    } finally {
      await this.flow!.release(ticket, settle.results, settle.slotsFreed).catch((err) => this.o.log(`[${this.stage}] flow release failed (slots free when their leases end): ${(err as Error).message}`));
    }
  }

  /**
   * Dispatches the valid entries and commits, retries or dead-letters each;
   * `settle` (a stage with flow limits) collects the results (budgets are
   * corrected by them) and, when every entry commits, has the commit free the
   * batch's slots.
   */
  private async dispatchAndSettle(malformed: ParsedEntry[], alreadyDone: ParsedEntry[], valid: ParsedEntry[], settle?: FlowSettle): Promise<void> {
    let results: StageItemResult[] = [];
    let traced: ReturnType<HopTracer["begin"]> | undefined;
    if (valid.length > 0) {
      const envelopes: Envelope[] = new Array(valid.length);
      for (let k = 0; k < valid.length; k++) envelopes[k] = valid[k].envelope!;
      traced = this.o.tracer?.begin(this.stage, envelopes, { entry: this.o.entry === true });
      try {
        const lease = { since: Date.now(), entries: valid };
        this.leases.add(lease);
        try {
          results = await this.invokeThroughOutage(envelopes);
        } finally {
          this.leases.delete(lease);
        }
      } catch (err) {
        // Closing in an outage: nothing ran, nothing is settled; the entries stay pending for another consumer.
        if (err instanceof ClosingError) throw err;
        const message = `dispatch failed: ${(err as Error).message}`;
        results = valid.map(() => ({ ok: false as const, error: { message, retryable: true }, ms: 0 }));
      }
      if (settle) settle.results = results;
    }

    const commits: Array<{ entry: ParsedEntry; result: Extract<StageItemResult, { ok: true }> | null }> = alreadyDone.map((entry) => ({ entry, result: null }));
    const retries: Array<{ entry: ParsedEntry; error: string }> = [];
    const dead: Array<{ entry: ParsedEntry; error: string; handlerFailure: boolean }> = malformed.map((entry) => ({ entry, error: entry.invalid!, handlerFailure: false }));
    for (let k = 0; k < valid.length; k++) {
      const entry = valid[k];
      const r = results[k];
      const foreign = r.ok && r.outputs && this.o.keys.partitions > 1 ? this.foreignOutput(entry, r.outputs) : undefined;
      if (foreign) dead.push({ entry, error: foreign, handlerFailure: true });
      else if (r.ok) commits.push({ entry, result: r });
      else if (!r.error.retryable) dead.push({ entry, error: r.error.message, handlerFailure: true });
      else if (entry.deliveries >= this.o.maxDeliveries) {
        dead.push({ entry, error: `${r.error.message} (gave up after ${entry.deliveries} deliveries)`, handlerFailure: true });
      } else retries.push({ entry, error: r.error.message });
    }

    const settleStart = traced ? Date.now() : 0;
    // The common case (everything succeeded) awaits the commit alone: no Promise.all per batch.
    if (dead.length === 0 && retries.length === 0) {
      if (commits.length > 0) await this.withConnectionRetry("commit", () => this.commit(commits, settle));
      this.progress.advanced();
      traced?.end(results, valid.map(() => ({ kind: "committed" })), { startedAt: settleStart, endedAt: Date.now() });
      return;
    }
    if (traced) {
      const outcome = new Map<ParsedEntry, HopOutcome>();
      for (const d of dead) outcome.set(d.entry, { kind: "dead-lettered", error: d.error });
      for (const r of retries) outcome.set(r.entry, { kind: "retry", error: r.error });
      const end = traced.end;
      traced = { end: (res, _o, times) => end(res, valid.map((e) => outcome.get(e) ?? { kind: "committed" }), times) };
    }
    await Promise.all([
      commits.length > 0 ? this.withConnectionRetry("commit", () => this.commit(commits)) : undefined,
      dead.length > 0 ? this.withConnectionRetry("dead-letter", () => this.deadLetter(dead)) : undefined,
      retries.length > 0 ? this.withConnectionRetry("retry", () => this.retryLater(retries)) : undefined,
    ]);
    this.progress.advanced();
    traced?.end(results, [], { startedAt: settleStart, endedAt: Date.now() });
  }

  /**
   * Dispatches a batch; while the stage endpoint gives no answer at all
   * (StageTransportError: workerd restarting, a deploy, the network) the
   * batch stays in flight, its leases extended, and is sent again with
   * backoff (dispatchRetryMs doubling to dispatchRetryMaxMs) until it
   * answers: an outage of any length uses no delivery attempt and
   * dead-letters nothing. Timeouts (the handler may be what hangs) get
   * dispatchTimeoutRetries such retries, then fail as usual. On close() the
   * batch is given up (its entries stay pending for another consumer).
   */
  private async invokeThroughOutage(envelopes: Envelope[]): Promise<StageItemResult[]> {
    let timeouts = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        const results = await this.o.invoker.invoke(this.stage, envelopes);
        if (this.dispatch.since !== undefined) {
          this.o.log(`[${this.stage}] stage endpoint answers again after ${((Date.now() - this.dispatch.since) / 1000).toFixed(1)} s`);
          this.dispatch.since = undefined;
          this.dispatch.error = undefined;
        }
        return results;
      } catch (err) {
        if (!isTransportError(err)) throw err;
        if (err.timeout && ++timeouts > this.o.dispatchTimeoutRetries) throw err;
        this.dispatch.failures++;
        this.dispatch.error = err.message;
        if (this.dispatch.since === undefined) {
          this.dispatch.since = Date.now();
          this.o.log(`[${this.stage}] stage endpoint gives no answer (${err.message}); batches wait and retry, no delivery attempt used`);
        }
        if (!this.running) throw new ClosingError(`the stage worker is closing while the stage endpoint gives no answer (${err.message}); the batch stays pending`);
        const delay = Math.min(this.o.dispatchRetryMs * 2 ** (attempt - 1), this.o.dispatchRetryMaxMs);
        await this.pause(Math.round(delay * (0.5 + Math.random() / 2)));
        if (!this.running) throw new ClosingError(`the stage worker closed while the stage endpoint gave no answer (${err.message}); the batch stays pending`);
      }
    }
  }

  /**
   * Only connection errors are retried here (the scripts are idempotent per
   * entry), for up to visibilityMs (past it other consumers may reclaim the
   * entries, so waiting longer holds a batch slot for nothing) or until
   * close()'s deadline; then the entries stay pending for reclaim.
   */
  private async withConnectionRetry(what: string, fn: () => Promise<unknown>): Promise<void> {
    const giveUpAt = Date.now() + this.o.visibilityMs;
    for (let attempt = 1; ; attempt++) {
      try {
        await fn();
        return;
      } catch (err) {
        const until = Math.min(giveUpAt, this.closeDeadline ?? Infinity);
        if (!isConnectionError(err) || Date.now() >= until) throw err;
        this.progress.failed(what, err);
        await sleep(Math.min(50 * 2 ** attempt, 1000, Math.max(0, until - Date.now())));
      }
    }
  }

  private byPartition<T extends { entry: ParsedEntry }>(items: T[]): Map<number, T[]> {
    const map = new Map<number, T[]>();
    for (const item of items) {
      const list = map.get(item.entry.partition) ?? [];
      list.push(item);
      map.set(item.entry.partition, list);
    }
    return map;
  }

  /** Commits `all`; with `settle`, the batch's flow slots are freed in the same call when the limiters share the commit's slot. */
  private async commit(all: Array<{ entry: ParsedEntry; result: Extract<StageItemResult, { ok: true }> | null }>, settle?: FlowSettle): Promise<void> {
    const now = Date.now();
    // Runs that wait for an event are parked (park-runs.ts), the rest committed.
    let items = all;
    if (all.some((i) => i.result?.status === "waiting")) {
      const waiting = all.filter((i) => i.result?.status === "waiting");
      items = all.filter((i) => i.result?.status !== "waiting");
      const entries = waiting.map(({ entry, result }) => ({ partition: entry.partition, id: entry.id, envelope: entry.envelope!, result: result!, stepField: this.stepField(entry.envelope!) }));
      await parkRuns(this.o.conn, this.o.keys, { stage: this.stage, consumer: this.o.consumer, entries, now });
      if (items.length === 0) return;
    }
    const fold = settle && this.flowFoldPartition !== undefined ? this.flowFoldPartition : -1;
    if (this.o.keys.partitions === 1) {
      const slots = fold === 0 ? this.flow!.slotsOf(settle!.ticket) : undefined;
      await this.commitPartition(0, items, now, slots);
      if (slots) settle!.slotsFreed = true;
      return;
    }
    const parts = this.byPartition(items);
    const slots = parts.has(fold) ? this.flow!.slotsOf(settle!.ticket) : undefined;
    await Promise.all([...parts].map(([p, list]) => this.commitPartition(p, list, now, p === fold ? slots : undefined)));
    if (slots) settle!.slotsFreed = true;
  }

  /** One commit-stage.lua call for the entries of one partition (arguments built in one pass), freeing `flowSlots` too. */
  private commitPartition(p: number, list: Array<{ entry: ParsedEntry; result: Extract<StageItemResult, { ok: true }> | null }>, now: number, flowSlots?: readonly FlowSlots[]): Promise<unknown> {
    const { keys } = this.o;
    const table = new KeyTable((this.commitKeys[p] ??= [keys.stream(this.stage, p), keys.stageStats(this.stage, p), keys.lastErrors(this.stage, p)]));
    // Stats pairs first (the script reads them before the entries).
    const buckets = new Map<string, number>();
    let latencySumUs = 0;
    for (let k = 0; k < list.length; k++) {
      const result = list[k].result;
      if (!result) continue;
      const field = latencyField(result.ms);
      buckets.set(field, (buckets.get(field) ?? 0) + 1);
      latencySumUs += Math.round(result.ms * 1000);
    }
    const args: Array<string | number> = [keys.group(this.stage), this.stage, now, this.o.checkpointTtlSeconds, this.o.logMaxLen, buckets.size + (latencySumUs > 0 ? 1 : 0)];
    for (const [field, count] of buckets) args.push(field, count);
    if (latencySumUs > 0) args.push("lat_sum_us", latencySumUs);
    args.push(list.length);
    let clear: string[] | undefined;
    for (let k = 0; k < list.length; k++) {
      const { entry, result } = list[k];
      const env = entry.envelope!;
      if (entry.deliveries > 1) (clear ??= []).push(entry.id);
      const outputs = result?.outputs;
      const nOut = outputs ? outputs.length : 0;
      const status = result?.status ?? "completed";
      const runStatus = nOut > 0 ? "running" : status === "skipped" ? "skipped" : "completed";
      // `by` names the consumer (host) that committed the step, for the run view and fault drills.
      const stepJson = JSON.stringify({ status, result: result?.result, ms: result?.ms ?? 0, attempt: env.attempt, at: now, by: this.o.consumer });
      args.push(entry.id, table.ref(keys.run(env.runId)), table.ref(keys.runLog(env.runId)), this.stepField(env), status, runStatus, stepJson, nOut);
      for (let o = 0; o < nOut; o++) {
        const out = outputs![o];
        args.push(table.ref(keys.stream(out.stage, keys.partitionOf(out.runId))), JSON.stringify(out));
      }
    }
    args.push(clear ? clear.length : 0);
    if (clear) for (const id of clear) args.push(id);
    if (flowSlots && flowSlots.length > 0) {
      args.push(flowSlots.length);
      for (const slot of flowSlots) {
        const { key, members } = slot;
        args.push(table.ref(key), members.length);
        for (let m = 0; m < members.length; m++) args.push(members[m]);
        const readmit = this.flow!.readmitSpec(slot, p);
        if (readmit) args.push(table.ref(readmit.waitKey), table.ref(readmit.readyKey), readmit.readyMember, readmit.limit, readmit.reserveMs);
        else args.push(0);
      }
    }
    if (!flowSlots || flowSlots.length === 0) return runScript(this.o.conn, "commitStage", table.keys, args);
    return runScript<[number, number, number, number]>(this.o.conn, "commitStage", table.keys, args).then((reply) => {
      this.flow!.counters.readmitted += Number(reply[3] ?? 0);
      return reply;
    });
  }

  private async deadLetter(items: Array<{ entry: ParsedEntry; error: string; handlerFailure: boolean }>): Promise<void> {
    const { keys } = this.o;
    const now = Date.now();
    await Promise.all(
      [...this.byPartition(items)].map(([p, list]) => {
        const table = new KeyTable([keys.stream(this.stage, p), keys.deadLetters(this.stage, p), keys.stageStats(this.stage, p), keys.lastErrors(this.stage, p)]);
        const entryArgs: Array<string | number> = [];
        for (const { entry, error } of list) {
          const env = entry.envelope;
          // Only a run of this partition may be touched (the script's keys share one slot).
          const runOk = env !== undefined && keys.partitionOf(env.runId) === p;
          entryArgs.push(entry.id, runOk ? table.ref(keys.run(env.runId)) : 0, runOk ? table.ref(keys.runLog(env.runId)) : 0, error, entry.deliveries, entry.raw);
        }
        const handlerFailures = list.filter((i) => i.handlerFailure).length;
        if (list.some((i) => i.entry.invalid)) {
          this.o.log(`[${this.stage}] dead-lettered ${list.filter((i) => i.entry.invalid).length} malformed entr(ies): ${list.find((i) => i.entry.invalid)?.entry.invalid}`);
        }
        return runScript(this.o.conn, "deadLetter", table.keys, [
          keys.group(this.stage), this.stage, now, this.o.checkpointTtlSeconds, this.o.deadLetterMaxLen, handlerFailures, list.length, ...entryArgs,
        ]);
      }),
    );
  }

  /** Exponential backoff with jitter: base * 2^(attempt-1), capped, times 0.5..1. */
  backoffFor(attempt: number): number {
    const capped = Math.min(this.o.backoffMs * 2 ** Math.max(0, attempt - 1), this.o.maxBackoffMs);
    return Math.round(capped * (0.5 + Math.random() / 2));
  }

  private async retryLater(items: Array<{ entry: ParsedEntry; error: string }>): Promise<void> {
    const { keys } = this.o;
    const now = Date.now();
    await Promise.all(
      [...this.byPartition(items)].map(([p, list]) => {
        const table = new KeyTable([keys.stream(this.stage, p), keys.stageStats(this.stage, p), keys.lastErrors(this.stage, p)]);
        const entryArgs: Array<string | number> = [];
        for (const { entry, error } of list) {
          const env = entry.envelope!;
          entryArgs.push(entry.id, this.backoffFor(entry.deliveries), error, table.ref(keys.run(env.runId)), table.ref(keys.runLog(env.runId)), entry.deliveries);
        }
        return runScript(this.o.conn, "retryLater", table.keys, [
          keys.group(this.stage), this.o.consumer, this.stage, now, this.o.visibilityMs, this.o.checkpointTtlSeconds, list.length, ...entryArgs,
        ]);
      }),
    );
  }
}
