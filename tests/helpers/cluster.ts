/**
 * One real local cluster per test file (worker-host/cluster-launcher.ts, the
 * same binary as startTestValkey, honours VALKEY_SERVER), and an @upstash/redis
 * client over it whose requester (the host's, in cluster mode) routes each command by its key.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Cluster } from "iovalkey";
import { Redis as UpstashRedis } from "@upstash/redis";
import { clusterRequester } from "../../worker-host/data-store";
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

/** The production requester (worker-host/data-store.ts), used here as the handlers use it in cluster mode. */
export { clusterRequester };
