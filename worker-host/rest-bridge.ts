/**
 * Local Upstash-compatible REST bridge: lets handlers running in workerd
 * (`wrangler dev`, Miniflare) reach Valkey with the unmodified `@upstash/redis`
 * client, exactly as they reach Upstash when deployed.
 *
 * Implements the subset of the Upstash REST protocol the client uses:
 * - `POST /` with one command as a JSON array, e.g. `["SET","k","v"]`
 * - `POST /pipeline` with an array of commands; answers `[{result}|{error}, ...]`
 * - `POST /multi-exec` the same, atomically; a discarded transaction answers 400
 * - `GET|POST /<cmd>/<arg>/...` (path form; a POST body is the last argument, raw bytes)
 * - `Upstash-Encoding: base64`: every string in the reply, at any depth, is
 *   base64 of the raw bytes; without it strings are UTF-8 text
 * - `Authorization: Bearer <token>` on every request (401 otherwise)
 * - `WAITAOF 1 0 <timeout>` as a single command when given an fsync barrier
 *   (DURABLE_ACCEPT=on), group-committed on the barrier's own connection
 *
 * Commands run over iovalkey with upper-cased names (no reply transformers) and
 * `callBuffer`, so values are byte-exact. On a Valkey Cluster (the connection
 * is an iovalkey Cluster) each command goes to the master of its key's slot,
 * each `/pipeline` entry to its own master, and a multi-key command or a
 * `/multi-exec` whose keys span slots is answered `400 {"error":"CROSSSLOT
 * Keys in request don't hash to the same slot"}` without sending anything
 * (see clusterExecutor). Only data commands run (ALLOWED_COMMANDS), on a
 * cluster too:
 * a holder of the token cannot flush, reconfigure or administer the server.
 * Blocking and connection-state commands are refused too: one HTTP request
 * must never hold or change a shared connection.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Command as ValkeyCommand, type Cluster } from "iovalkey";
import { z } from "zod";
import { randomHex } from "../functions/envelope";
import { keySlot } from "../functions/key-slot";
import { timingSafeEqual } from "../functions/http";
import type { FsyncBarrier } from "../functions/durable";
import { CROSSSLOT_ERROR } from "./data-store";
import { asCluster, isClusterConnection, reportConnectionTrouble, type Connection } from "./valkey";

/** Default bridge address; the same URL configures the handlers (UPSTASH_REDIS_REST_URL). */
export const DEFAULT_BRIDGE_URL = "http://127.0.0.1:8079";

const BLOCKING = new Set(["BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF", "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE", "MONITOR", "SYNC", "PSYNC"]);
const CONNECTION_STATE = new Set(["SELECT", "AUTH", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "CLIENT", "QUIT", "HELLO", "RESET", "READONLY", "READWRITE"]);

/**
 * The data commands the bridge runs: what users of the `@upstash/redis`
 * client need for data (strings, hashes, lists, sets, sorted sets, streams,
 * HyperLogLog, geo, key expiry and SCAN, scripts by EVAL/EVALSHA, PUBLISH).
 * Everything else is refused: server administration (FLUSHALL, CONFIG, ACL,
 * SHUTDOWN, DEBUG, MODULE, REPLICAOF...), keyspace-wide or cross-database
 * commands (KEYS, SWAPDB, MOVE, MIGRATE), FUNCTION, MONITOR, and the rest.
 */
export const ALLOWED_COMMANDS: ReadonlySet<string> = new Set([
  // strings
  "GET", "SET", "SETNX", "SETEX", "PSETEX", "GETSET", "GETDEL", "GETEX", "MGET", "MSET", "MSETNX", "APPEND", "STRLEN",
  "INCR", "INCRBY", "INCRBYFLOAT", "DECR", "DECRBY", "GETRANGE", "SETRANGE", "SUBSTR", "LCS",
  "GETBIT", "SETBIT", "BITCOUNT", "BITPOS", "BITOP", "BITFIELD", "BITFIELD_RO",
  // keys, expiry, iteration
  "DEL", "UNLINK", "EXISTS", "TYPE", "TOUCH", "RENAME", "RENAMENX", "SCAN", "DBSIZE",
  "EXPIRE", "EXPIREAT", "PEXPIRE", "PEXPIREAT", "EXPIRETIME", "PEXPIRETIME", "TTL", "PTTL", "PERSIST",
  // hashes
  "HDEL", "HEXISTS", "HGET", "HGETALL", "HINCRBY", "HINCRBYFLOAT", "HKEYS", "HLEN", "HMGET", "HMSET", "HSET", "HSETNX",
  "HSTRLEN", "HVALS", "HSCAN", "HRANDFIELD",
  "HEXPIRE", "HPEXPIRE", "HEXPIREAT", "HPEXPIREAT", "HTTL", "HPTTL", "HEXPIRETIME", "HPEXPIRETIME", "HPERSIST",
  // lists
  "LPUSH", "RPUSH", "LPUSHX", "RPUSHX", "LPOP", "RPOP", "LLEN", "LRANGE", "LINDEX", "LSET", "LINSERT", "LREM", "LTRIM",
  "LPOS", "LMOVE", "RPOPLPUSH", "LMPOP",
  // sets
  "SADD", "SREM", "SMEMBERS", "SISMEMBER", "SMISMEMBER", "SCARD", "SPOP", "SRANDMEMBER", "SMOVE", "SSCAN",
  "SINTER", "SINTERSTORE", "SINTERCARD", "SUNION", "SUNIONSTORE", "SDIFF", "SDIFFSTORE",
  // sorted sets
  "ZADD", "ZREM", "ZCARD", "ZCOUNT", "ZINCRBY", "ZSCORE", "ZMSCORE", "ZRANK", "ZREVRANK", "ZLEXCOUNT", "ZSCAN", "ZRANDMEMBER",
  "ZRANGE", "ZRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGE", "ZREVRANGEBYSCORE", "ZREVRANGEBYLEX", "ZRANGESTORE",
  "ZPOPMIN", "ZPOPMAX", "ZMPOP", "ZREMRANGEBYRANK", "ZREMRANGEBYSCORE", "ZREMRANGEBYLEX",
  "ZUNION", "ZUNIONSTORE", "ZINTER", "ZINTERSTORE", "ZINTERCARD", "ZDIFF", "ZDIFFSTORE",
  // streams (XREAD/XREADGROUP without BLOCK)
  "XADD", "XRANGE", "XREVRANGE", "XLEN", "XDEL", "XTRIM", "XREAD", "XREADGROUP", "XACK", "XCLAIM", "XAUTOCLAIM",
  "XPENDING", "XINFO", "XGROUP", "XSETID",
  // HyperLogLog, geo
  "PFADD", "PFCOUNT", "PFMERGE",
  "GEOADD", "GEODIST", "GEOHASH", "GEOPOS", "GEOSEARCH", "GEOSEARCHSTORE",
  // scripts (SCRIPT: LOAD and EXISTS only), pub/sub publishing, liveness
  "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "SCRIPT", "PUBLISH", "PING", "ECHO", "TIME",
]);
/** SCRIPT subcommands the bridge runs (SCRIPT FLUSH and SCRIPT KILL are refused). */
const SCRIPT_SUBCOMMANDS = new Set(["LOAD", "EXISTS"]);

/** Why a command may not run through the bridge, or undefined when it may. */
export function refusalOf(command: readonly unknown[]): string | undefined {
  const name = String(command[0] ?? "").toUpperCase();
  if (BLOCKING.has(name)) return `ERR ${name} is a blocking command; the REST bridge does not run blocking commands`;
  if ((name === "XREAD" || name === "XREADGROUP") && command.some((a, i) => i > 0 && String(a).toUpperCase() === "BLOCK")) {
    return `ERR ${name} with BLOCK is a blocking command; the REST bridge does not run blocking commands`;
  }
  if (CONNECTION_STATE.has(name)) return `ERR ${name} changes connection state; the REST bridge shares its connection, use /multi-exec for transactions`;
  if (!ALLOWED_COMMANDS.has(name)) return `ERR command ${printable(name)} is not allowed through the REST bridge (it runs data commands only)`;
  if (name === "SCRIPT") {
    const sub = String(command[1] ?? "").toUpperCase();
    if (!SCRIPT_SUBCOMMANDS.has(sub)) return `ERR SCRIPT ${printable(sub)} is not allowed through the REST bridge (SCRIPT LOAD and SCRIPT EXISTS are)`;
  }
  return undefined;
}

/** A command name as it may appear in an error: at most 64 printable characters. */
function printable(name: string): string {
  return name.replace(/[^\x21-\x7e]/g, "?").slice(0, 64);
}

const Arg = z.union([z.string(), z.number(), z.boolean()]);
const CommandBody = z.array(Arg).min(1, "a command is a non-empty JSON array like [\"GET\",\"key\"]");
const CommandsBody = z.array(CommandBody).min(1, "send at least one command");

type Arg = string | number | boolean | Buffer;
type Reply = { result: unknown } | { error: string };

function toArgs(command: readonly Arg[]): [string, Array<string | Buffer>] {
  const [name, ...rest] = command;
  // Upper case bypasses iovalkey's reply transformers; the client expects raw RESP shapes.
  return [String(name).toUpperCase(), rest.map((a) => (Buffer.isBuffer(a) ? a : Buffer.from(String(a), "utf8")))];
}

/** Converts a raw reply to JSON: bytes as base64 (or UTF-8 text), at any depth. */
export function encodeReply(value: unknown, base64: boolean): unknown {
  if (Buffer.isBuffer(value)) return base64 ? value.toString("base64") : value.toString("utf8");
  if (typeof value === "string") return base64 ? Buffer.from(value, "utf8").toString("base64") : value;
  if (Array.isArray(value)) return value.map((v) => encodeReply(v, base64));
  if (value instanceof Error) return encodeReply(value.message, base64);
  if (typeof value === "bigint") return Number(value);
  return value ?? null;
}

export interface RestBridgeOptions {
  /** Valkey connection; the bridge opens its own duplicate of it and never changes that one's state. */
  conn: Connection;
  /** Bearer token clients must send. */
  token: string;
  /** Listen address; loopback by default. */
  hostname?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Allow listening on a non-loopback address (expose Valkey to the network: think twice). */
  allowRemote?: boolean;
  /** Largest request body, bytes. */
  maxBodyBytes?: number;
  /**
   * Answers `WAITAOF 1 0 <timeout>` (a single command) through this
   * group-committing barrier instead of refusing it as blocking: the Worker's
   * DURABLE_ACCEPT=on waits for the fsync of writes the bridge already
   * answered. The barrier's own timeout applies.
   */
  fsyncBarrier?: FsyncBarrier;
  log?: (line: string) => void;
}

export interface RestBridge {
  url: string;
  token: string;
  close(): Promise<void>;
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost", "[::1]"]);

/** True for http(s) URLs whose host is a loopback address. */
export function isLoopbackUrl(url: string): boolean {
  try {
    return LOOPBACK.has(new URL(url).hostname);
  } catch {
    return false;
  }
}

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        reject(new HttpError(413, `ERR request body larger than ${max} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function parseJson<T>(body: Buffer, schema: z.ZodType<T>): T {
  let json: unknown;
  try {
    json = JSON.parse(body.toString("utf8"));
  } catch {
    throw new HttpError(400, "ERR request body is not valid JSON");
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new HttpError(400, `ERR invalid request body: ${issue.path.join(".") || "(root)"}: ${issue.message}`);
  }
  return parsed.data;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

/** How the bridge runs commands: on one server, or routed over a Valkey Cluster. */
interface Executor {
  /** One command; rejects with the server's error (or an HttpError). */
  one(command: Arg[]): Promise<unknown>;
  /** Independent commands, one [error, reply] each, in order. */
  pipeline(commands: Arg[][]): Promise<Array<[Error | null, unknown]>>;
  /** MULTI/EXEC; null when discarded; rejects with an HttpError when refused (EXECABORT, CROSSSLOT). */
  transaction(commands: Arg[][]): Promise<Array<[Error | null, unknown]> | null>;
  close(): void;
}

function standaloneExecutor(source: Connection, log: (line: string) => void): Executor {
  // Own connection without auto-pipelining: iovalkey's auto-pipeliner drops the
  // command name of callBuffer(); commands still pipeline on the socket.
  const conn = source.duplicate({ enableAutoPipelining: false, connectionName: "edgepipe-rest-bridge" });
  reportConnectionTrouble(conn, "rest-bridge", log);
  return {
    one(command) {
      const [name, args] = toArgs(command);
      return conn.callBuffer(name, ...args);
    },
    async pipeline(commands) {
      const pipe = conn.pipeline();
      for (const command of commands) {
        const [name, args] = toArgs(command);
        pipe.callBuffer(name, ...args);
      }
      return ((await pipe.exec()) ?? []) as Array<[Error | null, unknown]>;
    },
    async transaction(commands) {
      const multi = conn.multi();
      for (const command of commands) {
        const [name, args] = toArgs(command);
        multi.callBuffer(name, ...args);
      }
      try {
        return (await multi.exec()) as Array<[Error | null, unknown]> | null;
      } catch (err) {
        // EXECABORT: a command was rejected while queueing, nothing ran.
        throw new HttpError(400, `${(err as Error).message}`);
      }
    },
    close: () => conn.disconnect(),
  };
}

/** XINFO / XGROUP subcommands whose next argument is the stream key (iovalkey's command table names no key for them). */
const STREAM_KEY_SUBCOMMANDS: Record<string, ReadonlySet<string>> = {
  XINFO: new Set(["STREAM", "GROUPS", "CONSUMERS"]),
  XGROUP: new Set(["CREATE", "SETID", "DESTROY", "CREATECONSUMER", "DELCONSUMER"]),
};
/** Hash-field expiry commands (newer than iovalkey's command table): the key is the first argument. */
const FIRST_ARG_KEY = new Set(["HEXPIRE", "HPEXPIRE", "HEXPIREAT", "HPEXPIREAT", "HTTL", "HPTTL", "HEXPIRETIME", "HPEXPIRETIME", "HPERSIST"]);

/**
 * A bridge command on a cluster: routed by its keys (iovalkey looks key
 * positions up by the lower-case name, completed for the commands its table
 * lacks), replies as raw buffers and untransformed (HGETALL stays a flat array).
 */
class RoutedCommand extends ValkeyCommand {
  private readonly routedKeys: Array<string | Buffer>;

  constructor(command: readonly Arg[]) {
    const [upper, args] = toArgs(command);
    super(upper.toLowerCase(), args, { replyEncoding: null });
    const fromTable = super.getKeys();
    const sub = String(args[0] ?? "").toUpperCase();
    if (fromTable.length === 0 && STREAM_KEY_SUBCOMMANDS[upper]?.has(sub) && args.length > 1) this.routedKeys = [args[1]];
    else if (fromTable.length === 0 && FIRST_ARG_KEY.has(upper) && args.length > 0) this.routedKeys = [args[0]];
    else this.routedKeys = fromTable;
  }

  override getKeys(): Array<string | Buffer> {
    return this.routedKeys ?? super.getKeys();
  }

  // The declared return type is iovalkey's; the value is whatever the server sent, as buffers.
  override transformReply(result: Buffer | Buffer[]): string {
    return result as unknown as string;
  }
}

/** The one slot of all keys of `commands`, null when they name none, "cross" when they span slots. */
function slotOf(commands: readonly RoutedCommand[]): number | null | "cross" {
  let slot: number | null = null;
  for (const command of commands) {
    for (const key of command.getKeys()) {
      const s = keySlot(Buffer.isBuffer(key) ? key.toString("utf8") : String(key));
      if (slot === null) slot = s;
      else if (s !== slot) return "cross";
    }
  }
  return slot;
}

/** The CROSSSLOT answer: what the server says, sent as Upstash sends any failed command (HTTP 400, `{"error": ...}`). */
const crossSlot = () => new HttpError(400, CROSSSLOT_ERROR);

/**
 * Commands over an iovalkey Cluster. Each command goes to the master of its
 * key's slot (MOVED/ASK and failover are the client's); a multi-key command
 * whose keys span slots answers CROSSSLOT without being sent. A pipeline's
 * entries go each to its own master (in order per master: they share its
 * connection). A transaction is one MULTI on the slot of its keys, refused
 * with CROSSSLOT (nothing runs) when they span slots. Keyless commands that
 * mean "the database" run on every master: SCRIPT LOAD (each master has its
 * own script cache), SCRIPT EXISTS (1 only where every master has it), DBSIZE
 * (the sum). SCAN walks the masters one after another (in slot order): its
 * cursor is the node's cursor x masters + the master's index, a decimal
 * string as the server's, "0" again once the last master is done.
 */
function clusterExecutor(source: Connection, log: (line: string) => void): Executor {
  const shared = asCluster(source);
  const cluster: Cluster = shared.duplicate([], {
    enableAutoPipelining: false,
    redisOptions: { ...shared.options.redisOptions, connectionName: "edgepipe-rest-bridge" },
  });
  reportConnectionTrouble(cluster as unknown as Connection, "rest-bridge", log);
  const masters = () => cluster.nodes("master");

  async function one(command: Arg[]): Promise<unknown> {
    const name = String(command[0]).toUpperCase();
    const sub = String(command[1] ?? "").toUpperCase();
    if (name === "SCAN") return scan(command);
    if (name === "DBSIZE" || (name === "SCRIPT" && (sub === "LOAD" || sub === "EXISTS"))) {
      const [, args] = toArgs(command);
      const replies = (await Promise.all(masters().map((node) => node.callBuffer(name, ...args)))) as unknown[];
      if (name === "DBSIZE") return replies.reduce((sum: number, n) => sum + Number(n), 0);
      if (sub === "LOAD") return replies[0];
      return (replies[0] as number[]).map((_, i) => (replies.every((r) => Number((r as number[])[i]) === 1) ? 1 : 0));
    }
    const routed = new RoutedCommand(command);
    if (slotOf([routed]) === "cross") throw crossSlot();
    return cluster.sendCommand(routed);
  }

  /** SCAN over every master in turn (see above); MATCH, COUNT and TYPE go to each master as given. */
  async function scan(command: Arg[]): Promise<unknown> {
    const order: string[] = [];
    for (const entry of cluster.slots) if (entry?.[0] && !order.includes(entry[0])) order.push(entry[0]);
    const nodes = new Map(masters().map((n) => [`${n.options.host}:${n.options.port}`, n]));
    if (order.length === 0 || order.some((at) => !nodes.has(at))) throw new HttpError(400, "ERR SCAN: the cluster's slot map is not complete yet, try again");
    let value: bigint;
    try {
      value = BigInt(String(command[1] ?? ""));
    } catch {
      throw new HttpError(400, "ERR invalid cursor");
    }
    const m = BigInt(order.length);
    let index = Number(value % m);
    let cursor = value / m;
    const [, args] = toArgs(command);
    const rest = args.slice(1);
    const reply = (await nodes.get(order[index])!.callBuffer("SCAN", String(cursor), ...rest)) as [Buffer, unknown[]];
    cursor = BigInt(reply[0].toString());
    if (cursor === 0n) index++;
    const next = index >= order.length ? "0" : String(cursor * m + BigInt(index));
    return [next, reply[1]];
  }

  return {
    one,
    pipeline: (commands) =>
      Promise.all(
        commands.map((command) =>
          one(command).then(
            (v): [null, unknown] => [null, v],
            (e: Error): [Error, null] => [e, null],
          ),
        ),
      ),
    async transaction(commands) {
      const routed = commands.map((command) => new RoutedCommand(command));
      if (slotOf(routed) === "cross") throw crossSlot();
      const multi = cluster.multi();
      // A Pipeline has sendCommand at run time; its chainable type does not show it.
      const queue = multi as unknown as { sendCommand(command: ValkeyCommand): unknown };
      for (const command of routed) queue.sendCommand(command);
      try {
        return (await multi.exec()) as Array<[Error | null, unknown]> | null;
      } catch (err) {
        throw new HttpError(400, `${(err as Error).message}`);
      }
    },
    close: () => cluster.disconnect(),
  };
}

/**
 * Starts the bridge and resolves once it listens.
 * @example
 * const bridge = await startRestBridge({ conn, token: "secret", port: 8079 });
 * const redis = new Redis({ url: bridge.url, token: bridge.token });
 */
export function startRestBridge({
  conn: source,
  token,
  hostname = "127.0.0.1",
  port = 0,
  allowRemote = false,
  maxBodyBytes = 32 * 1024 * 1024,
  fsyncBarrier,
  log = () => {},
}: RestBridgeOptions): Promise<RestBridge> {
  if (!token) throw new Error("the REST bridge needs a token");
  if (!allowRemote && !LOOPBACK.has(hostname)) {
    throw new Error(`the REST bridge listens on loopback only (got ${hostname}); pass allowRemote to expose Valkey beyond this machine`);
  }
  const expected = `Bearer ${token}`;
  const exec = isClusterConnection(source) ? clusterExecutor(source, log) : standaloneExecutor(source, log);

  async function runPipeline(commands: Arg[][], base64: boolean): Promise<Reply[]> {
    const refusals = commands.map(refusalOf);
    const allowed = commands.filter((_, i) => !refusals[i]);
    const replies = allowed.length === 0 ? [] : await exec.pipeline(allowed);
    let next = 0;
    return commands.map((_, i) => {
      if (refusals[i]) return { error: refusals[i]! };
      const [err, result] = replies[next++] ?? [new Error("ERR no reply"), null];
      return err ? { error: err.message } : { result: encodeReply(result, base64) };
    });
  }

  async function runTransaction(commands: Arg[][], base64: boolean): Promise<Reply[]> {
    const refused = commands.map(refusalOf).find(Boolean);
    if (refused) throw new HttpError(400, refused);
    const replies = await exec.transaction(commands);
    if (!replies) throw new HttpError(409, "ERR transaction discarded");
    return replies.map(([err, result]) => (err ? { error: err.message } : { result: encodeReply(result, base64) }));
  }

  /** WAITAOF through the barrier: [1, 0] once fsynced, [0, 0] when not confirmed in time (as the server answers). */
  async function waitaof(command: Arg[]): Promise<[number, number]> {
    if (command.length !== 4 || Number(command[1]) !== 1 || Number(command[2]) !== 0) {
      throw new HttpError(400, "ERR the REST bridge answers WAITAOF 1 0 <timeout> only (local fsync, no replicas)");
    }
    try {
      await fsyncBarrier!.wait();
      return [1, 0];
    } catch (err) {
      if (/did not confirm/.test((err as Error).message)) return [0, 0];
      throw new HttpError(400, `ERR ${(err as Error).message}`);
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const authorization = req.headers.authorization ?? "";
    if (!timingSafeEqual(authorization, expected)) {
      send(res, 401, { error: "Unauthorized: send Authorization: Bearer <UPSTASH_REDIS_REST_TOKEN>" });
      return;
    }
    const base64 = String(req.headers["upstash-encoding"] ?? "").toLowerCase() === "base64";
    const url = new URL(req.url ?? "/", "http://bridge");
    const method = req.method ?? "GET";
    const body = await readBody(req, maxBodyBytes);
    const path = url.pathname.replace(/\/+$/, "");

    if (path === "/pipeline" || path === "/multi-exec") {
      if (method !== "POST") throw new HttpError(405, `ERR ${path} takes POST`);
      const commands = parseJson(body, CommandsBody);
      send(res, 200, path === "/pipeline" ? await runPipeline(commands, base64) : await runTransaction(commands, base64));
      return;
    }

    let command: Arg[];
    if (path === "") {
      if (method !== "POST") throw new HttpError(405, "ERR POST a command as a JSON array to /");
      command = parseJson(body, CommandBody);
    } else {
      // Path form: /set/key/value; a POST body (raw bytes) is appended as the last argument.
      command = path.slice(1).split("/").map((segment) => decodeURIComponent(segment));
      if (method === "POST" && body.length > 0) command.push(body);
    }
    if (fsyncBarrier && String(command[0]).toUpperCase() === "WAITAOF") {
      send(res, 200, { result: await waitaof(command) });
      return;
    }
    const refused = refusalOf(command);
    if (refused) throw new HttpError(400, refused);
    try {
      send(res, 200, { result: encodeReply(await exec.one(command), base64) });
    } catch (err) {
      if (err instanceof HttpError) throw err;
      // A command error (WRONGTYPE, NOSCRIPT, ...) is a 400 with the server's message, as on Upstash.
      throw new HttpError(400, (err as Error).message);
    }
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      if (status === 500) log(`[rest-bridge] ${req.method} ${req.url}: ${(err as Error).stack ?? err}`);
      if (!res.headersSent) send(res, status, { error: (err as Error).message });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 65_000;

  return new Promise((resolve, reject) => {
    const failed = (err: Error) => {
      exec.close();
      reject(err);
    };
    server.once("error", failed);
    server.listen(port, hostname, () => {
      server.off("error", failed);
      const addr = server.address() as AddressInfo;
      const host = addr.family === "IPv6" || hostname.includes(":") ? `[${addr.address}]` : addr.address;
      resolve({
        url: `http://${host}:${addr.port}`,
        token,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }).then(() => exec.close()),
      });
    });
  });
}

/**
 * Where and with which token the bridge should listen, from the same two
 * variables the handlers read. Returns null when the URL is not loopback
 * (handlers then talk to a real Upstash endpoint and no bridge is needed).
 */
export function bridgeSettingsFromEnv(env: { UPSTASH_REDIS_REST_URL?: string; UPSTASH_REDIS_REST_TOKEN?: string }): { hostname: string; port: number; token: string; generatedToken: boolean } | null {
  const url = env.UPSTASH_REDIS_REST_URL ?? DEFAULT_BRIDGE_URL;
  if (!isLoopbackUrl(url)) return null;
  const parsed = new URL(url);
  if (parsed.protocol !== "http:") throw new Error(`the local REST bridge speaks http, not ${parsed.protocol} (UPSTASH_REDIS_REST_URL=${url})`);
  const hostname = parsed.hostname === "localhost" ? "127.0.0.1" : parsed.hostname.replace(/^\[|\]$/g, "");
  const token = env.UPSTASH_REDIS_REST_TOKEN || randomHex(24);
  return { hostname, port: Number(parsed.port || 80), token, generatedToken: !env.UPSTASH_REDIS_REST_TOKEN };
}
