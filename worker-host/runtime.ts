/**
 * Composes the Node runtime of `npm start`: the embedded (or configured)
 * Valkey, the worker-host with in-process handlers, and the HTTP server.
 * Tests use it too, so what they exercise is what users run.
 */
import { settingsFor } from "../functions/config";
import { CLUSTER_KEY_DEFAULTS } from "../functions/keys";
import type { Pipeline } from "../functions/pipeline";
import type { AppEnv } from "../functions/redis";
import { workerTuning, type HostConfig } from "./config";
import { WorkerHost } from "./host";
import { tracingFromEnv } from "./tracing";
import { InProcessInvoker, type Invoker } from "./invoker";
import { serveHttp, type HttpServer } from "./server";
import { launchCluster, type RunningCluster } from "./cluster-launcher";
import { clusterDataDir } from "./data-dir";
import { connectDataStore, parseSeedNodes, upstashFor, type SeedNode } from "./data-store";
import { asCluster, closeConnection, connectValkey, withTimeout, type Connection } from "./valkey";
import { ValkeyNotifier } from "./notifier";
import { WEB_DIST_DIR } from "./static-files";
import { findServerBinary, launchValkey, type RunningValkey } from "./valkey-launcher";
import { startFsyncBarrier, type ValkeyFsyncBarrier } from "./fsync-barrier";

interface FetchApp {
  fetch(request: Request, env?: unknown): Response | Promise<Response>;
}

export interface Runtime {
  url: string;
  /** The server's URL, or on a cluster its seed list (host:port,...). */
  valkeyUrl: string;
  /** One server, or a Valkey Cluster (VALKEY_CLUSTER_NODES, a cluster node's VALKEY_URL, or VALKEY_CLUSTER). */
  mode: "standalone" | "cluster";
  valkey?: RunningValkey;
  /** The embedded local cluster (VALKEY_CLUSTER / --cluster N). */
  cluster?: RunningCluster;
  conn: Connection;
  env: AppEnv;
  host: WorkerHost;
  server: HttpServer;
  /** DURABLE_ACCEPT=on: the group-committing fsync barrier ingest waits on. */
  barrier?: ValkeyFsyncBarrier;
  /**
   * Graceful stop, bounded (a few seconds even with the server gone): HTTP
   * server, worker-host (in-flight batches commit when the server is
   * reachable, else stay pending for reclaim), connections, embedded server.
   */
  close(): Promise<void>;
}

export interface RuntimeOptions {
  config: HostConfig;
  pipeline: Pipeline;
  app: FetchApp;
  /** Defaults to in-process dispatch through `app`. */
  invoker?: Invoker;
  log?: (line: string) => void;
  /** close() finishes within about this long (default SHUTDOWN_MS), the embedded server's own stop aside. */
  shutdownMs?: number;
}

/** How long close() takes at most: Ctrl-C of a host under load exits well within 5 s. */
export const SHUTDOWN_MS = 3000;
/** Of that, kept for the span exporter's flush and closing the connections after the worker-host stopped. */
const SHUTDOWN_FLUSH_MS = 500;

export interface OpenStore {
  mode: "standalone" | "cluster";
  conn: Connection;
  /** The server's URL, or on a cluster its seed list (host:port,...). */
  valkeyUrl: string;
  /** The single server's URL (undefined on a cluster). */
  url?: string;
  seeds?: SeedNode[];
  valkey?: RunningValkey;
  cluster?: RunningCluster;
  /** PARTITIONS and FEED_BUCKETS: the cluster defaults on a cluster unless set. */
  partitions: number;
  feedBuckets: number;
  /** Stops the embedded server or cluster (not the connection). */
  stopEmbedded(): Promise<void>;
}

/**
 * Opens the data store `config` names, for npm start and npm run dev alike:
 * the embedded server (VALKEY_DATA_DIR), the embedded cluster (VALKEY_CLUSTER
 * / --cluster N), VALKEY_CLUSTER_NODES, or VALKEY_URL (a cluster node's URL is
 * detected and reconnected as a cluster).
 */
export async function openStore(config: HostConfig, log: (line: string) => void): Promise<OpenStore> {
  let valkey: RunningValkey | undefined;
  let cluster: RunningCluster | undefined;
  let seeds: SeedNode[] | undefined = config.VALKEY_CLUSTER_NODES ? parseSeedNodes(config.VALKEY_CLUSTER_NODES) : undefined;
  const embedded = !config.VALKEY_URL && !seeds;
  if (embedded) {
    const binary = findServerBinary(config.VALKEY_SERVER ? { ...process.env, VALKEY_SERVER: config.VALKEY_SERVER } : process.env);
    if (config.VALKEY_CLUSTER) {
      const dataDir = clusterDataDir(config.VALKEY_DATA_DIR);
      log(`starting an embedded ${config.VALKEY_CLUSTER}-master ${binary.flavor} ${binary.version} cluster (${binary.path}), data dir ${dataDir}`);
      cluster = await launchCluster({ masters: config.VALKEY_CLUSTER, dataDir, binary, log });
      seeds = cluster.startupNodes;
    } else {
      log(`starting embedded ${binary.flavor} ${binary.version} (${binary.path}), data dir ${config.VALKEY_DATA_DIR}`);
      valkey = await launchValkey({ dataDir: config.VALKEY_DATA_DIR, port: config.VALKEY_PORT, binary, log });
    }
  }
  const stopEmbedded = async () => {
    await Promise.all([valkey?.stop(), cluster?.stop()]);
  };
  const url = config.VALKEY_URL ?? valkey?.url;
  let store: Awaited<ReturnType<typeof connectDataStore>>;
  try {
    // A VALKEY_URL that names a cluster node is detected here (INFO cluster) and reconnected as a cluster.
    store = await connectDataStore({ url: seeds && !config.VALKEY_CLUSTER_NODES ? undefined : url, seeds, name: "edgepipe-host", log });
  } catch (err) {
    await stopEmbedded();
    throw err;
  }
  const { conn, mode, target: valkeyUrl } = store;
  // On a cluster, partitions and buckets spread over the masters unless set (docs/cluster.md, sizing).
  const partitions = mode === "cluster" && !config.given.has("PARTITIONS") ? CLUSTER_KEY_DEFAULTS.partitions : config.PARTITIONS;
  const feedBuckets = mode === "cluster" && !config.given.has("FEED_BUCKETS") ? CLUSTER_KEY_DEFAULTS.feedBuckets : config.FEED_BUCKETS;
  if (mode === "cluster") log(`cluster mode: ${asCluster(conn).nodes("master").length} masters, ${partitions} partitions, ${feedBuckets} feed buckets`);
  const clusterSeeds = mode === "cluster" ? (seeds ?? parseSeedNodes(valkeyUrl)) : undefined;
  return { mode, conn, valkeyUrl, url: mode === "standalone" ? url : undefined, seeds: clusterSeeds, valkey, cluster, partitions, feedBuckets, stopEmbedded };
}

/** Starts everything `npm start` runs and resolves once it is serving. */
export async function startRuntime({ config, pipeline, app, invoker, log = console.log, shutdownMs = SHUTDOWN_MS }: RuntimeOptions): Promise<Runtime> {
  const { mode, conn, valkeyUrl, url, valkey, cluster, partitions, feedBuckets } = await openStore(config, log);
  const env: AppEnv = {
    REDIS: upstashFor(conn),
    CORS_PUBLIC_READS: config.CORS_PUBLIC_READS ? "on" : "off",
    ...(config.CORS_ORIGINS ? { CORS_ORIGINS: config.CORS_ORIGINS } : {}),
    KEY_PREFIX: config.KEY_PREFIX,
    PARTITIONS: String(partitions),
    CHECKPOINT_TTL_SECONDS: String(config.CHECKPOINT_TTL_SECONDS),
    RECENT_RUNS_MAX: String(config.RECENT_RUNS_MAX),
    BACKPRESSURE_MAX_LAG: String(config.BACKPRESSURE_MAX_LAG),
    DURABLE_ACCEPT: config.DURABLE_ACCEPT ? "on" : "off",
    DURABLE_ACCEPT_TIMEOUT_MS: String(config.DURABLE_ACCEPT_TIMEOUT_MS),
    FEED_BUCKETS: String(feedBuckets),
    IDEMPOTENCY_TTL_SECONDS: String(config.IDEMPOTENCY_TTL_SECONDS),
    MAX_BODY_BYTES: String(config.MAX_BODY_BYTES),
    STAGE_MAX_BODY_BYTES: String(config.STAGE_MAX_BODY_BYTES),
    ...config.appVars,
    ...(config.API_TOKEN ? { API_TOKEN: config.API_TOKEN } : {}),
      ...(config.API_READ_TOKEN ? { API_READ_TOKEN: config.API_READ_TOKEN } : {}),
    ...(config.STAGE_SIGNING_KEYS ? { STAGE_SIGNING_KEYS: config.STAGE_SIGNING_KEYS } : {}),
  };
  const { keys } = settingsFor(env);
  let barrier: ValkeyFsyncBarrier | undefined;
  if (config.DURABLE_ACCEPT) {
    try {
      // WAITAOF confirms the fsync of one server: the barrier waits on the server the host talks to (on a cluster: on every master).
      barrier = await startFsyncBarrier(conn, { markKey: keys.fsyncMark(), timeoutMs: config.DURABLE_ACCEPT_TIMEOUT_MS, embedded: valkey !== undefined, log });
    } catch (err) {
      conn.disconnect();
      await valkey?.stop();
      await cluster?.stop();
      throw err;
    }
    env.FSYNC_BARRIER = barrier;
  }
  // Live streams (e.g. SSE) wake on pub/sub notifications instead of polling.
  // On a cluster: classic SUBSCRIBE on one node (iovalkey's cluster subscriber, moved when its node goes):
  // fan-out's PUBLISH reaches every node over the cluster bus.
  const notifier = new ValkeyNotifier(mode === "cluster" ? () => asCluster(conn).duplicate() as unknown as Connection : () => connectValkey(url!, { name: "edgepipe-notifier", log }), log);
  env.NOTIFIER = notifier;
  const tracing = tracingFromEnv(config);
  if (tracing) env.SPAN_SINK = tracing.spanSink;
  const host = new WorkerHost({
    pipeline,
    keys,
    conn,
    invoker: invoker ?? new InProcessInvoker(app, env),
    streamMaxLen: config.STREAM_MAXLEN,
    duePollMs: config.DUE_POLL_MS,
    recentRunsMax: config.RECENT_RUNS_MAX,
    tuning: { ...workerTuning(config), ...(tracing ? { tracer: tracing.tracer } : {}) },
    env,
    log,
  });
  await host.run();
  const server = await serveHttp({ app, env, keys, pipeline, host, port: config.PORT, hostname: config.HOST, webDir: config.webDisabled ? undefined : (config.WEB_DIR ?? WEB_DIST_DIR) });
  let closing: Promise<void> | undefined;
  return {
    url: server.url,
    valkeyUrl,
    mode,
    valkey,
    cluster,
    conn,
    env,
    host,
    server,
    barrier,
    close() {
      closing ??= (async () => {
        // One budget for the whole stop, whatever the load and the server do: the HTTP server and the
        // worker-host stop side by side; batches that cannot commit by the host's deadline stay pending
        // for another consumer; the span exporter and the connections get what is left, bounded too.
        const deadline = Date.now() + shutdownMs;
        const left = (cap: number) => Math.max(0, Math.min(cap, deadline - Date.now()));
        const report = (name: string) => (err: unknown) => log(`[shutdown] ${name}: ${(err as Error).message}`);
        await Promise.all([
          withTimeout(server.close(), left(1000), "http server close").catch(report("http server")),
          host.close({ deadline: deadline - SHUTDOWN_FLUSH_MS }).catch(report("worker-host")),
        ]);
        if (tracing) await withTimeout(tracing.shutdown(), Math.max(100, left(SHUTDOWN_FLUSH_MS)), "span export").catch(report("tracing"));
        await Promise.all([notifier.close(), barrier?.close(), closeConnection(conn, Math.max(100, left(500)))]).catch(report("connections"));
        await Promise.all([valkey?.stop(), cluster?.stop()]).catch(report("embedded valkey"));
      })();
      return closing;
    },
  };
}
