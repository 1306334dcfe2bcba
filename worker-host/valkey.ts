/**
 * iovalkey connections, the script runner (EVALSHA with EVAL fallback on
 * NOSCRIPT, so SCRIPT FLUSH or a fresh server never breaks a commit) and the
 * @upstash/redis Requester that runs commands over iovalkey, so in-process
 * handlers use the same client API as on Workers with no HTTP hop.
 */
import Valkey, { Command as ValkeyCommand, type Cluster } from "iovalkey";
import { Redis as UpstashRedis, type Requester, type UpstashRequest, type UpstashResponse } from "@upstash/redis";
import type { RedisClient } from "../functions/redis";
import { LUA } from "../functions/lua.generated";
import { isUnavailableError, withDeadline } from "../functions/unavailable";

export type ScriptName = keyof typeof LUA;
/**
 * The shared command connection. On a Valkey Cluster it is an iovalkey
 * `Cluster` (routes every command by its key; see connectCluster), typed as
 * the standalone client whose command methods it shares; code that needs the
 * difference asks `isClusterConnection`.
 */
export type Connection = Valkey;

/** True when `conn` is an iovalkey Cluster client (connectCluster). */
export function isClusterConnection(conn: Connection): boolean {
  return (conn as unknown as { isCluster?: boolean }).isCluster === true;
}

/** The Cluster behind a connection of connectCluster. */
export function asCluster(conn: Connection): Cluster {
  if (!isClusterConnection(conn)) throw new Error("not a cluster connection");
  return conn as unknown as Cluster;
}

export interface ConnectOptions {
  /** CLIENT SETNAME, and the label of log lines. */
  name?: string;
  /** Where connection trouble is reported (once per outage, see reportConnectionTrouble). */
  log?: (line: string) => void;
  /** Commands outstanding and no reply for this long: the connection is closed and reopened (see closeWhenStalled). */
  stallMs?: number;
}

/**
 * Runs independent commands (lower-case names, e.g. `["hget", key, field]`)
 * and answers `[error, value]` per command, in order: one pipeline on one
 * server; on a cluster each command goes to its key's master (iovalkey
 * auto-pipelines them per node), since a pipeline may not span masters.
 */
export async function execMany(conn: Connection, commands: ReadonlyArray<[string, ...Array<string | number>]>): Promise<Array<[Error | null, unknown]>> {
  if (!isClusterConnection(conn)) {
    const pipe = conn.pipeline();
    for (const [name, ...args] of commands) pipe.call(name, ...args);
    return ((await pipe.exec()) ?? []) as Array<[Error | null, unknown]>;
  }
  return Promise.all(commands.map(([name, ...args]) => conn.call(name, ...args).then((v): [null, unknown] => [null, v], (e: Error): [Error, null] => [e, null])));
}

/**
 * Opens the shared command connection (commits, claims, handlers' commands,
 * API requests). Nothing waits for an outage to end: a command in flight when
 * the connection drops fails at once (maxRetriesPerRequest 0; never re-sent
 * behind the caller's back), and one issued while it is down waits at most one
 * reconnect attempt (retry delay <= 1 s, connect timeout 2 s) before it fails.
 * Callers retry what is safe to retry (the stage worker's scripts are idempotent).
 * `lazyConnect` is off so errors surface early.
 */
export function connectValkey(url: string, { name = "edgepipe", log = console.warn, stallMs = 5000 }: ConnectOptions = {}): Connection {
  const conn = new Valkey(url, {
    connectionName: name,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: 2000,
    enableAutoPipelining: true,
    retryStrategy: (times) => Math.min(times * 100, 1000),
  });
  reportConnectionTrouble(conn, name, log);
  closeWhenStalled(conn, stallMs);
  return conn;
}

/**
 * Logs a connection's trouble once per episode: the first error after it was
 * ready ("connection lost"), then nothing per reconnect attempt, then one line
 * when it is ready again. Also makes sure the connection has an error listener
 * (iovalkey prints "[ioredis] Unhandled error event" for every attempt otherwise).
 */
export function reportConnectionTrouble(conn: Connection, name: string, log: (line: string) => void): void {
  let since: number | undefined;
  conn.on("error", (err: Error) => {
    if (since !== undefined) return;
    since = Date.now();
    log(`[valkey ${name}] connection lost (${err.message}); reconnecting`);
  });
  conn.on("ready", () => {
    if (since === undefined) return;
    log(`[valkey ${name}] reconnected after ${((Date.now() - since) / 1000).toFixed(1)} s`);
    since = undefined;
  });
}

/**
 * A connection that has commands outstanding and receives nothing for
 * `stallMs` (a frozen network path, a half-open socket) is destroyed, so its
 * commands fail and iovalkey opens a new one. One unref'd interval per
 * connection and a counter bumped per socket read: nothing per command.
 */
function closeWhenStalled(conn: Connection, stallMs: number): void {
  let reads = 0;
  let seen = 0;
  let quietSince = Date.now();
  const onData = () => reads++;
  conn.on("connect", () => conn.stream?.on("data", onData));
  const timer = setInterval(() => {
    const now = Date.now();
    if (reads !== seen || conn.commandQueue.length === 0 || !conn.stream || conn.stream.destroyed) {
      seen = reads;
      quietSince = now;
    } else if (now - quietSince >= stallMs) {
      quietSince = now;
      conn.stream.destroy(new Error(`no reply from the server in ${stallMs} ms; reconnecting`));
    }
  }, Math.max(50, Math.floor(stallMs / 4)));
  timer.unref();
  conn.once("end", () => clearInterval(timer));
}

/**
 * Opens a dedicated connection for blocking reads. It never reconnects by
 * itself, queues nothing while it is not ready and re-sends nothing: when it
 * drops, its outstanding read fails and the reader opens a new one (iovalkey's
 * own reconnect re-sends blocking reads, and a disconnect() while it is
 * reconnecting leaves the read pending for good). Resolves once it is ready
 * and its CLIENT ID is known (for CLIENT UNBLOCK); bounded by `timeoutMs`.
 */
export async function openBlockingConnection(source: Connection, { name, timeoutMs }: { name: string; timeoutMs: number }): Promise<{ conn: Connection; id: number }> {
  const conn = source.duplicate({
    connectionName: name,
    lazyConnect: true,
    enableAutoPipelining: false,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: timeoutMs,
  });
  // Errors end in the reader's own handling (the read or the open fails); this listener only keeps iovalkey quiet.
  conn.on("error", () => undefined);
  try {
    const id = await withTimeout(conn.connect().then(() => conn.client("ID")), timeoutMs, `opening ${name}`);
    return { conn, id: Number(id) };
  } catch (err) {
    conn.disconnect();
    throw err;
  }
}

/** Settles with `promise`, or rejects after `ms` with "no answer within <ms> ms (<what>)". */
export const withTimeout = withDeadline;

/** Quits politely within `ms`, else drops the socket. */
export async function closeConnection(conn: Connection, ms = 1000): Promise<void> {
  try {
    await withTimeout(conn.quit(), ms, "quit");
  } catch {
    conn.disconnect();
  }
}

/**
 * Errors that say the server could not be reached or stopped answering (as
 * opposed to an error reply to the command), so the work is worth retrying.
 */
export const isConnectionError = isUnavailableError;

function isNoScript(err: unknown): boolean {
  return err instanceof Error && err.message.startsWith("NOSCRIPT");
}

/**
 * Runs a script from lua/ by name: EVALSHA, falling back to EVAL on NOSCRIPT.
 * @example
 * await runScript(conn, "trimStream", [streamKey], [10_000]);
 */
export async function runScript<T = unknown>(
  conn: Connection,
  name: ScriptName,
  keys: readonly string[],
  args: ReadonlyArray<string | number>,
): Promise<T> {
  const script = LUA[name];
  try {
    return (await send(conn, "evalsha", script.sha, keys, args)) as T;
  } catch (err) {
    if (!isNoScript(err)) throw err;
    return (await send(conn, "eval", script.source, keys, args)) as T;
  }
}

/**
 * A command encoded straight into one Buffer: iovalkey's own encoder builds
 * the RESP text by string concatenation (several cons strings per argument,
 * flattened again at the socket write), which for a commit of a few KB was
 * the largest single source of garbage per stage hop. Here the only
 * allocation is the Buffer (pooled, off the V8 heap for small sizes).
 */
class BufferCommand extends ValkeyCommand {
  /**
   * Takes ownership of `args` (strings and numbers only): iovalkey's constructor
   * would copy (flat) and convert a list of thousands of arguments once more.
   */
  constructor(name: string, args: Array<string | number>) {
    super(name, [], { replyEncoding: "utf8" });
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (typeof a !== "string") args[i] = a == null ? "" : String(a);
    }
    this.args = args;
  }

  override toWritable(): Buffer {
    return encodeCommand(this.name, this.args as string[]);
  }
}

/** A command sent as bytes encoded once (see encodeCommand), e.g. a read loop's unchanging XREADGROUP. */
class EncodedCommand extends ValkeyCommand {
  constructor(name: string, private readonly bytes: Buffer) {
    super(name, [], { replyEncoding: "utf8" });
  }

  override toWritable(): Buffer {
    return this.bytes;
  }
}

/**
 * Encodes a command as RESP into one Buffer (numbers as decimal strings).
 * @example
 * const bytes = encodeCommand("xreadgroup", ["GROUP", "g", "c", "STREAMS", "s", ">"]);
 */
export function encodeCommand(name: string, args: ReadonlyArray<string | number>): Buffer {
  const n = args.length;
  if (lengths.length < n) lengths.length = n;
  let total = 1 + digits(n + 1) + 2 + 1 + digits(name.length) + 2 + name.length + 2;
  for (let i = 0; i < n; i++) {
    const len = Buffer.byteLength(String(args[i]));
    lengths[i] = len;
    total += 1 + digits(len) + 2 + len + 2;
  }
  const buf = Buffer.allocUnsafe(total);
  buf[0] = 42; // '*'
  let at = writeLine(buf, 1, n + 1);
  buf[at++] = 36; // '$'
  at = writeLine(buf, at, name.length);
  at += buf.write(name, at, "latin1");
  buf[at++] = 13;
  buf[at++] = 10;
  for (let i = 0; i < n; i++) {
    buf[at++] = 36;
    at = writeLine(buf, at, lengths[i]);
    at += buf.write(String(args[i]), at, "utf8");
    buf[at++] = 13;
    buf[at++] = 10;
  }
  return buf;
}

/** Scratch byte lengths for encodeCommand (synchronous, so one array serves all). */
const lengths: number[] = [];

function digits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

/** Writes a non-negative integer in decimal followed by CRLF; returns the next offset. */
function writeLine(buf: Buffer, at: number, value: number): number {
  const end = at + digits(value);
  for (let i = end - 1; i >= at; i--) {
    buf[i] = 48 + (value % 10);
    value = Math.floor(value / 10);
  }
  buf[end] = 13;
  buf[end + 1] = 10;
  return end + 2;
}

/**
 * Sends one script command. iovalkey's auto-pipelining builds a Pipeline
 * object (promises, maps, a second Command) around every command of a tick;
 * a script call is already one big batched command, so it goes straight to
 * the socket. Only when nothing is waiting in the auto-pipeline queue, so a
 * command issued earlier on this connection is never overtaken.
 */
function send(conn: Connection, command: "evalsha" | "eval", shaOrSource: string, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
  if (!canSendDirect(conn)) {
    return command === "evalsha" ? conn.evalsha(shaOrSource, keys.length, ...keys, ...args) : conn.eval(shaOrSource, keys.length, ...keys, ...args);
  }
  const all: Array<string | number> = [shaOrSource, keys.length];
  for (let i = 0; i < keys.length; i++) all.push(keys[i]);
  for (let i = 0; i < args.length; i++) all.push(args[i]);
  return sendDirect(conn, command, all);
}

/** Direct sends keep the connection's order only while its auto-pipeline queue is empty. */
function canSendDirect(conn: Connection): boolean {
  return !conn.options.keyPrefix && (!conn.options.enableAutoPipelining || conn.autoPipelineQueueSize === 0);
}

/**
 * Sends bytes made by encodeCommand, when the connection allows direct sends
 * (else the ordinary call with `args`, in order behind its auto-pipeline).
 */
export function sendEncoded(conn: Connection, name: string, bytes: Buffer, args: ReadonlyArray<string | number>): Promise<unknown> {
  return canSendDirect(conn) ? (conn.sendCommand(new EncodedCommand(name, bytes)) as Promise<unknown>) : conn.call(name, ...args);
}

/** A command in flight that its sender can give up on: `reject` settles its promise now, whatever the connection does. */
export interface AbandonableCommand {
  readonly promise: Promise<unknown>;
  reject(err: Error): void;
}

/**
 * Sends bytes made by encodeCommand on a connection of openBlockingConnection
 * and keeps hold of the command, so a reader whose read never settles can
 * settle it itself (no timer or promise per command).
 */
export function sendAbandonable(conn: Connection, name: string, bytes: Buffer): AbandonableCommand {
  const command = new EncodedCommand(name, bytes);
  conn.sendCommand(command);
  return command;
}

/** Sends a command whose argument list the caller hands over (it is converted in place). */
function sendDirect(conn: Connection, name: string, args: Array<string | number>): Promise<unknown> {
  return conn.sendCommand(new BufferCommand(name, args)) as Promise<unknown>;
}

type Command = [string, ...unknown[]];

const corkedStreams = new WeakSet<object>();

function uncork(stream: Connection["stream"]): void {
  corkedStreams.delete(stream);
  stream.uncork();
}

/**
 * Corks the connection's socket until the current tick's microtasks have run:
 * the commands handlers send one by one in it (the envelopes of a batch run
 * side by side) leave in one write instead of one write each.
 */
function corkUntilNextTick(conn: Connection): void {
  const stream = conn.status === "ready" ? conn.stream : undefined;
  if (!stream || corkedStreams.has(stream)) return;
  corkedStreams.add(stream);
  stream.cork();
  process.nextTick(uncork, stream);
}

// Upper-cased names bypass iovalkey's reply transformers (e.g. HGETALL -> object):
// @upstash/redis expects the raw RESP shape, as its REST API returns it.
const raw = (cmd: string) => cmd.toUpperCase();

const toResult = (result: unknown): UpstashResponse<unknown> => ({ result });
const toError = (err: Error): UpstashResponse<unknown> => ({ error: err.message });

function toResponse([err, result]: [Error | null, unknown]): UpstashResponse<unknown> {
  return err ? { error: err.message } : { result };
}

/**
 * An @upstash/redis Requester that executes commands over an iovalkey connection.
 * Values come back as the server sent them (no base64), which is what the
 * client expects from a custom requester.
 */
export function iovalkeyRequester(conn: Connection): Requester {
  return {
    async request<TResult>(req: UpstashRequest): Promise<UpstashResponse<TResult>> {
      const route = req.path?.[0];
      if (route === "pipeline" && canSendDirect(conn)) {
        // Each command straight to the socket (corked for the tick, so they leave in
        // one write with the tick's other commands), instead of an iovalkey Pipeline
        // object per request: a pipeline is not a transaction, the replies come
        // back in order, one result or error each.
        const commands = req.body as Command[];
        corkUntilNextTick(conn);
        const replies: Array<Promise<UpstashResponse<unknown>>> = new Array(commands.length);
        for (let i = 0; i < commands.length; i++) {
          const [cmd, ...args] = commands[i];
          replies[i] = sendDirect(conn, raw(cmd), args as Array<string | number>).then(toResult, toError);
        }
        return (await Promise.all(replies)) as unknown as UpstashResponse<TResult>;
      }
      if (route === "pipeline" || route === "multi-exec") {
        const commands = req.body as Command[];
        const batch = route === "pipeline" ? conn.pipeline() : conn.multi();
        for (const [cmd, ...args] of commands) batch.call(raw(cmd), ...(args as (string | number)[]));
        const replies = await batch.exec().catch((err: Error) => {
          // EXECABORT: the transaction was discarded; report per command like Upstash does
          return commands.map(() => [err, null] as [Error, null]);
        });
        return (replies ?? []).map((r) => toResponse(r as [Error | null, unknown])) as unknown as UpstashResponse<TResult>;
      }
      const [cmd, ...args] = req.body as Command;
      try {
        let reply: Promise<unknown>;
        if (canSendDirect(conn)) {
          corkUntilNextTick(conn);
          reply = sendDirect(conn, raw(cmd), args as Array<string | number>);
        } else reply = conn.call(raw(cmd), ...(args as (string | number)[]));
        return { result: (await reply) as TResult };
      } catch (err) {
        return { error: (err as Error).message };
      }
    },
  };
}

/**
 * The @upstash/redis client for in-process handlers, backed by iovalkey.
 * Built from a requester, the client does not auto-pipeline (only clients
 * built from a URL do): each call is one request, and the requester corks
 * the socket for the rest of the tick, so the calls of one tick share a write.
 */
export function upstashOverValkey(conn: Connection): RedisClient {
  return new UpstashRedis(iovalkeyRequester(conn));
}
