/**
 * One real local cluster per test file (worker-host/cluster-launcher.ts, the
 * same binary as startTestValkey, honours VALKEY_SERVER), and an @upstash/redis
 * client over it whose test-only requester routes each command by its key.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Cluster, Command } from "iovalkey";
import { Redis as UpstashRedis, type Requester, type UpstashRequest, type UpstashResponse } from "@upstash/redis";
import type { RedisClient } from "../../functions/redis";
import { launchCluster, type ClusterLaunchOptions, type RunningCluster } from "../../worker-host/cluster-launcher";

export interface TestCluster {
  cluster: RunningCluster;
  /** A cluster client (closed by stop()). */
  client: Cluster;
  /** @upstash/redis client over `client` (clusterRequester). */
  redis: RedisClient;
  /** Opens another cluster client, closed by stop(). */
  connect(options?: ConstructorParameters<typeof Cluster>[1]): Cluster;
  stop(): Promise<void>;
}

/** Starts a throwaway cluster (3 masters by default); call stop() in afterAll. */
export async function startTestCluster(options: Omit<ClusterLaunchOptions, "dataDir"> = {}): Promise<TestCluster> {
  const dir = mkdtempSync(join(tmpdir(), "edgepipe-cluster-"));
  const cluster = await launchCluster({ appendOnly: false, ...options, dataDir: dir });
  const clients: Cluster[] = [];
  const connect = (clusterOptions: ConstructorParameters<typeof Cluster>[1] = {}) => {
    const c = new Cluster(cluster.startupNodes, { redisOptions: { connectionName: "edgepipe-test" }, ...clusterOptions });
    c.on("error", () => {});
    clients.push(c);
    return c;
  };
  const client = connect();
  return {
    cluster,
    client,
    redis: new UpstashRedis(clusterRequester(client)) as unknown as RedisClient,
    connect,
    async stop() {
      await Promise.allSettled(clients.map((c) => c.quit()));
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

type Reply = string | number | null | Reply[];

/** Buffers to strings, recursively: the raw RESP shape @upstash/redis expects from a requester. */
function rawReply(value: unknown): Reply {
  if (Buffer.isBuffer(value)) return value.toString("utf8");
  if (Array.isArray(value)) return value.map(rawReply);
  return value as Reply;
}

/**
 * A command routed by its keys (the lowercase name is what iovalkey looks the
 * key positions up by) whose reply is not reshaped (e.g. HGETALL stays a flat
 * array), as @upstash/redis expects it.
 */
class RawCommand extends Command {
  constructor(name: string, args: Array<string | number>) {
    super(name.toLowerCase(), args.map(String));
  }

  // The declared return type is iovalkey's (strings or buffers); the value is whatever the server sent.
  override transformReply(result: Buffer | Buffer[]): string {
    return rawReply(result) as unknown as string;
  }
}

type UpstashCommand = [string, ...Array<string | number>];

/**
 * Test-only @upstash/redis Requester over an iovalkey Cluster: each command
 * goes to the master of its key's slot (MOVED/ASK handled by iovalkey); a
 * pipeline is sent command by command (it is not a transaction, and its keys
 * may live on different masters); multi-exec is one MULTI on the slot of its
 * keys, and answers CROSSSLOT like the server when they span slots.
 * `onCommand` sees every single or pipelined command (the audit records script calls with it).
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
        const multi = cluster.multi();
        // A Pipeline has sendCommand at run time; its chainable type does not show it.
        const queue = multi as unknown as { sendCommand(command: Command): unknown };
        for (const [name, ...args] of commands) queue.sendCommand(new RawCommand(name, args));
        const replies = await multi.exec().catch((err: Error) => commands.map(() => [err, null] as [Error, null]));
        return (replies ?? []).map(([err, result]) => (err ? { error: err.message } : { result })) as unknown as UpstashResponse<TResult>;
      }
      return (await send(req.body as UpstashCommand)) as UpstashResponse<TResult>;
    },
  };
}
