/**
 * The data store the host talks to: one server (an iovalkey connection) or a
 * Valkey Cluster (an iovalkey `Cluster` client that routes every command by
 * its key). Chosen at start: `VALKEY_CLUSTER_NODES` (seed nodes), or a
 * `VALKEY_URL` whose server answers `cluster_enabled:1` in `INFO cluster`.
 *
 * Cluster specifics live here: the seed list, blocking connections opened to
 * the master that owns a slot (a stage reads each partition there), the
 * @upstash/redis requester that routes each command by its key, and the
 * CROSSSLOT answer for a transaction across slots.
 */
import Valkey, { Cluster, Command as ValkeyCommand, type ClusterOptions, type RedisOptions } from "iovalkey";
import { errors, Redis as UpstashRedis, type Requester, type UpstashRequest, type UpstashResponse } from "@upstash/redis";
import { keySlot } from "../functions/key-slot";
import type { RedisClient } from "../functions/redis";
import { connectValkey, isClusterConnection, reportConnectionTrouble, upstashOverValkey, withTimeout, type Connection } from "./valkey";

export interface SeedNode {
  host: string;
  port: number;
}

/** Parses `host:port,host:port` (VALKEY_CLUSTER_NODES); throws naming the bad entry. */
export function parseSeedNodes(list: string): SeedNode[] {
  const nodes = list
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const m = /^(\[[^\]]+\]|[^:\s]+):(\d{1,5})$/.exec(entry);
      const port = m ? Number(m[2]) : NaN;
      if (!m || port < 1 || port > 65535) throw new Error(`VALKEY_CLUSTER_NODES: "${entry}" is not host:port`);
      return { host: m[1].replace(/^\[|\]$/g, ""), port };
    });
  if (nodes.length === 0) throw new Error("VALKEY_CLUSTER_NODES names no node");
  return nodes;
}

/** User, password and TLS of a redis:// or rediss:// URL, as node options (the cluster's nodes use the same). */
export function nodeOptionsFromUrl(url: string | undefined): RedisOptions {
  if (!url) return {};
  const u = new URL(url);
  const options: RedisOptions = {};
  if (u.username) options.username = decodeURIComponent(u.username);
  if (u.password) options.password = decodeURIComponent(u.password);
  if (u.protocol === "rediss:") options.tls = {};
  return options;
}

export interface ClusterConnectOptions {
  /** User, password and TLS for every node (the same as for VALKEY_URL). */
  nodeOptions?: RedisOptions;
  name?: string;
  log?: (line: string) => void;
  /** How often the slot map is refreshed without traffic (so a failover or resharding is noticed). */
  slotsRefreshIntervalMs?: number;
}

/**
 * Opens a Cluster client for the shared command connection. MOVED/ASK,
 * failover and new masters are the client's job (it refreshes its slot map
 * every `slotsRefreshIntervalMs` too: iovalkey's default is never). Scripts
 * reload per node through runScript's NOSCRIPT fallback. Unlike the
 * standalone connection, a command whose node connection closes is sent again
 * after `retryDelayOnFailover` (the Cluster client always does): delivery is
 * at least once, and every script is idempotent per entry.
 */
export function connectCluster(seeds: SeedNode[], { nodeOptions = {}, name = "edgepipe", log = console.warn, slotsRefreshIntervalMs = 2000 }: ClusterConnectOptions = {}): Connection {
  const options: ClusterOptions = {
    // Off: iovalkey's cluster auto-pipeline fails whole batches ("All keys in the pipeline should belong
    // to the same slots allocation group") when a slot-map refresh lands between queueing and sending.
    enableAutoPipelining: false,
    slotsRefreshInterval: slotsRefreshIntervalMs,
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    retryDelayOnTryAgain: 100,
    maxRedirections: 16,
    redisOptions: { connectionName: name, connectTimeout: 2000, maxRetriesPerRequest: 0, ...nodeOptions },
  };
  const cluster = new Cluster(seeds, options);
  reportConnectionTrouble(cluster as unknown as Connection, name, log);
  return cluster as unknown as Connection;
}

/** Resolves once `conn` (standalone or cluster) is ready; bounded. */
export async function waitReady(conn: Connection, ms: number, what: string): Promise<void> {
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      if (conn.status === "ready") return resolve();
      conn.once("ready", () => resolve());
      conn.once("end", () => reject(new Error("connection ended")));
    }),
    ms,
    what,
  );
}

/** True when the server at `url` runs in cluster mode (`INFO cluster`: cluster_enabled:1). */
export function clusterEnabled(info: string): boolean {
  return /^cluster_enabled:1\s*$/m.test(info);
}

export interface DataStore {
  mode: "standalone" | "cluster";
  /** The shared command connection (a Cluster client in cluster mode). */
  conn: Connection;
  /** What it reaches, for log lines: the URL, or the seed list. */
  target: string;
}

/**
 * Connects to the configured store: the cluster of `seeds` when given, else
 * `url`, which is asked `INFO cluster` once: a cluster node is reconnected as
 * a Cluster client seeded with that node (user, password and TLS from the URL).
 */
export async function connectDataStore({ url, seeds, name = "edgepipe-host", log = console.warn, timeoutMs = 10_000 }: { url?: string; seeds?: SeedNode[]; name?: string; log?: (line: string) => void; timeoutMs?: number }): Promise<DataStore> {
  const nodeOptions = nodeOptionsFromUrl(url);
  if (!seeds) {
    if (!url) throw new Error("connectDataStore: a URL or seed nodes are needed");
    const conn = connectValkey(url, { name, log });
    try {
      await waitReady(conn, timeoutMs, `connecting to ${url}`);
      const info = String(await conn.info("cluster"));
      if (!clusterEnabled(info)) return { mode: "standalone", conn, target: url };
    } catch (err) {
      conn.disconnect();
      throw new Error(`cannot reach Valkey at ${url}: ${(err as Error).message}`);
    }
    conn.disconnect();
    const u = new URL(url);
    seeds = [{ host: u.hostname.replace(/^\[|\]$/g, ""), port: Number(u.port || 6379) }];
    log(`${url} is a cluster node (INFO cluster: cluster_enabled:1): cluster mode`);
  }
  const conn = connectCluster(seeds, { nodeOptions, name, log });
  const target = seeds.map((s) => `${s.host}:${s.port}`).join(",");
  try {
    await waitReady(conn, timeoutMs, `connecting to the cluster at ${target}`);
  } catch (err) {
    conn.disconnect();
    throw new Error(`cannot reach the Valkey Cluster at ${target}: ${(err as Error).message}`);
  }
  return { mode: "cluster", conn, target };
}

/** The @upstash/redis client for in-process handlers over either kind of connection. */
export function upstashFor(conn: Connection): RedisClient {
  return isClusterConnection(conn) ? (new UpstashRedis(clusterRequester(conn as unknown as Cluster)) as unknown as RedisClient) : upstashOverValkey(conn);
}

/** `host:port` of the master that serves `slot` in the client's slot map, if known. */
export function masterOf(cluster: Cluster, slot: number): string | undefined {
  return cluster.slots[slot]?.[0];
}

/** The client's own command connection to a master (for CLIENT UNBLOCK of a reader there). */
export function commandConnectionTo(cluster: Cluster, nodeKey: string): Valkey | undefined {
  return cluster.nodes("master").find((n) => `${n.options.host}:${n.options.port}` === nodeKey);
}

/**
 * Opens a blocking connection to the master that serves `slot` now, with the
 * same policy as openBlockingConnection (no reconnect, no offline queue, no
 * re-send). When the slot map names no reachable owner, the map is refreshed
 * and the open fails: the reader retries with backoff.
 */
export async function openBlockingConnectionToSlot(conn: Connection, slot: number, { name, timeoutMs }: { name: string; timeoutMs: number }): Promise<{ conn: Connection; id: number; node: string }> {
  const cluster = conn as unknown as Cluster;
  const node = masterOf(cluster, slot);
  if (!node) {
    cluster.refreshSlotsCache();
    throw new Error(`no master known for slot ${slot} (slot map refreshing)`);
  }
  const at = node.lastIndexOf(":");
  const blocking = new Valkey({
    ...cluster.options.redisOptions,
    host: node.slice(0, at),
    port: Number(node.slice(at + 1)),
    connectionName: name,
    lazyConnect: true,
    enableAutoPipelining: false,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: timeoutMs,
  });
  blocking.on("error", () => undefined);
  try {
    const id = await withTimeout(blocking.connect().then(() => blocking.client("ID")), timeoutMs, `opening ${name} on ${node}`);
    return { conn: blocking, id: Number(id), node };
  } catch (err) {
    blocking.disconnect();
    cluster.refreshSlotsCache();
    throw err;
  }
}

type Reply = string | number | null | Reply[];

/** Buffers to strings, recursively: the raw RESP shape @upstash/redis expects from a requester. */
function rawReply(value: unknown): Reply {
  if (Buffer.isBuffer(value)) return value.toString("utf8");
  if (Array.isArray(value)) return value.map(rawReply);
  return value as Reply;
}

/**
 * A command routed by its keys (iovalkey looks key positions up by the
 * lower-case name) whose reply is not reshaped (HGETALL stays a flat array),
 * as @upstash/redis expects it.
 */
export class RawCommand extends ValkeyCommand {
  constructor(name: string, args: ReadonlyArray<string | number | Buffer>) {
    super(name.toLowerCase(), args.map((a) => (Buffer.isBuffer(a) ? a : String(a))));
  }

  // The declared return type is iovalkey's (strings or buffers); the value is whatever the server sent.
  override transformReply(result: Buffer | Buffer[]): string {
    return rawReply(result) as unknown as string;
  }
}

/** The server's own answer to keys of several slots in one request (Upstash answers the same). */
export const CROSSSLOT_ERROR = "CROSSSLOT Keys in request don't hash to the same slot";

/** The one slot of every key of `commands`, null when they have none, or "cross" when they span slots. */
export function slotOfCommands(commands: ReadonlyArray<ReadonlyArray<string | number | Buffer>>): number | null | "cross" {
  let slot: number | null = null;
  for (const [name, ...args] of commands) {
    for (const key of new RawCommand(String(name), args).getKeys()) {
      const s = keySlot(Buffer.isBuffer(key) ? key.toString("utf8") : String(key));
      if (slot === null) slot = s;
      else if (s !== slot) return "cross";
    }
  }
  return slot;
}

type UpstashCommand = [string, ...Array<string | number>];

/**
 * The @upstash/redis Requester over an iovalkey Cluster: each command goes to
 * the master of its key's slot (MOVED/ASK followed by iovalkey); a pipeline
 * is sent command by command (it is not a transaction, and its keys may live
 * on different masters); multi-exec is one MULTI on the slot of its keys, and
 * is refused whole with CROSSSLOT when they span slots, exactly as the HTTP
 * client reports the REST bridge's 400 answer.
 * `onCommand` sees every single or pipelined command (the cluster audit
 * records script calls with it).
 */
export function clusterRequester(cluster: Cluster, { onCommand }: { onCommand?: (name: string, args: Array<string | number>) => void } = {}): Requester {
  const send = (command: UpstashCommand): Promise<UpstashResponse<unknown>> => {
    const [name, ...args] = command;
    onCommand?.(name, args);
    return (cluster.sendCommand(new RawCommand(name, args)) as Promise<unknown>).then(
      (result) => ({ result }),
      (err: Error) => ({ error: err.message }),
    );
  };
  return {
    async request<TResult>(req: UpstashRequest): Promise<UpstashResponse<TResult>> {
      const route = req.path?.[0];
      if (route === "pipeline") {
        return (await Promise.all((req.body as UpstashCommand[]).map(send))) as unknown as UpstashResponse<TResult>;
      }
      if (route === "multi-exec") {
        const commands = req.body as UpstashCommand[];
        // As the HTTP client reports the bridge's (and Upstash's) 400 answer: the transaction is refused whole.
        if (slotOfCommands(commands) === "cross") throw new errors.UpstashError(`${CROSSSLOT_ERROR}, command was: ${JSON.stringify(commands)}`);
        const multi = cluster.multi();
        // A Pipeline has sendCommand at run time; its chainable type does not show it.
        const queue = multi as unknown as { sendCommand(command: ValkeyCommand): unknown };
        for (const [name, ...args] of commands) queue.sendCommand(new RawCommand(name, args));
        const replies = await multi.exec().catch((err: Error) => commands.map(() => [err, null] as [Error, null]));
        return (replies ?? []).map(([err, result]) => (err ? { error: err.message } : { result })) as unknown as UpstashResponse<TResult>;
      }
      return (await send(req.body as UpstashCommand)) as UpstashResponse<TResult>;
    },
  };
}
