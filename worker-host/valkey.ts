/**
 * iovalkey connections, the script runner (EVALSHA with EVAL fallback on
 * NOSCRIPT, so SCRIPT FLUSH or a fresh server never breaks a commit) and the
 * @upstash/redis Requester that runs commands over iovalkey, so in-process
 * handlers use the same client API as on Workers with no HTTP hop.
 */
import Valkey, { Command as ValkeyCommand } from "iovalkey";
import { Redis as UpstashRedis, type Requester, type UpstashRequest, type UpstashResponse } from "@upstash/redis";
import type { RedisClient } from "../functions/redis";
import { LUA } from "../functions/lua.generated";

export type ScriptName = keyof typeof LUA;
export type Connection = Valkey;

/** Opens an iovalkey connection; `lazyConnect` is off so errors surface early. */
export function connectValkey(url: string, { name = "edgepipe" }: { name?: string } = {}): Connection {
  return new Valkey(url, {
    connectionName: name,
    maxRetriesPerRequest: null,
    enableAutoPipelining: true,
    retryStrategy: (times) => Math.min(times * 100, 2000),
  });
}

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
