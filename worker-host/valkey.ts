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
  override toWritable(): Buffer {
    const args = this.args as Array<string | number>;
    const strings: string[] = new Array(args.length);
    const lengths: number[] = new Array(args.length);
    const name = this.name;
    let total = 1 + digits(args.length + 1) + 2 + 1 + digits(name.length) + 2 + name.length + 2;
    for (let i = 0; i < args.length; i++) {
      const s = typeof args[i] === "string" ? (args[i] as string) : String(args[i]);
      const n = Buffer.byteLength(s);
      strings[i] = s;
      lengths[i] = n;
      total += 1 + digits(n) + 2 + n + 2;
    }
    const buf = Buffer.allocUnsafe(total);
    let at = buf.write(`*${args.length + 1}\r\n$${name.length}\r\n${name}\r\n`, 0, "latin1");
    for (let i = 0; i < strings.length; i++) {
      at += buf.write(`$${lengths[i]}\r\n`, at, "latin1");
      at += buf.write(strings[i], at, "utf8");
      buf[at++] = 13;
      buf[at++] = 10;
    }
    return buf;
  }
}

function digits(n: number): number {
  return n < 10 ? 1 : n < 100 ? 2 : n < 1000 ? 3 : n < 10000 ? 4 : n < 100000 ? 5 : String(n).length;
}

/**
 * Sends one script command. iovalkey's auto-pipelining builds a Pipeline
 * object (promises, maps, a second Command) around every command of a tick;
 * a script call is already one big batched command, so it goes straight to
 * the socket. Only when nothing is waiting in the auto-pipeline queue, so a
 * command issued earlier on this connection is never overtaken.
 */
function send(conn: Connection, command: "evalsha" | "eval", shaOrSource: string, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<unknown> {
  if (conn.options.enableAutoPipelining && conn.autoPipelineQueueSize > 0) {
    return command === "evalsha" ? conn.evalsha(shaOrSource, keys.length, ...keys, ...args) : conn.eval(shaOrSource, keys.length, ...keys, ...args);
  }
  const all: Array<string | number> = [shaOrSource, keys.length];
  for (let i = 0; i < keys.length; i++) all.push(keys[i]);
  for (let i = 0; i < args.length; i++) all.push(args[i]);
  return conn.sendCommand(new BufferCommand(command, all, { replyEncoding: "utf8", keyPrefix: conn.options.keyPrefix })) as Promise<unknown>;
}

type Command = [string, ...unknown[]];

// Upper-cased names bypass iovalkey's reply transformers (e.g. HGETALL -> object):
// @upstash/redis expects the raw RESP shape, as its REST API returns it.
const raw = (cmd: string) => cmd.toUpperCase();

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
        return { result: (await conn.call(raw(cmd), ...(args as (string | number)[]))) as TResult };
      } catch (err) {
        return { error: (err as Error).message };
      }
    },
  };
}

/** The @upstash/redis client for in-process handlers, backed by iovalkey. */
export function upstashOverValkey(conn: Connection): RedisClient {
  // The client's own auto-pipelining batches calls into /pipeline requests,
  // which the requester runs as one iovalkey pipeline.
  return new UpstashRedis(iovalkeyRequester(conn));
}
