/**
 * Composes the Node runtime of `npm start`: the embedded (or configured)
 * Valkey, the worker-host with in-process handlers, and the HTTP server.
 * Tests use it too, so what they exercise is what users run.
 */
import { settingsFor } from "../functions/config";
import type { Pipeline } from "../functions/pipeline";
import type { AppEnv } from "../functions/redis";
import { workerTuning, type HostConfig } from "./config";
import { WorkerHost } from "./host";
import { InProcessInvoker, type Invoker } from "./invoker";
import { serveHttp, type HttpServer } from "./server";
import { closeConnection, connectValkey, upstashOverValkey, withTimeout, type Connection } from "./valkey";
import { ValkeyNotifier } from "./notifier";
import { WEB_DIST_DIR } from "./static-files";
import { findServerBinary, launchValkey, type RunningValkey } from "./valkey-launcher";

interface FetchApp {
  fetch(request: Request, env?: unknown): Response | Promise<Response>;
}

export interface Runtime {
  url: string;
  valkeyUrl: string;
  valkey?: RunningValkey;
  conn: Connection;
  env: AppEnv;
  host: WorkerHost;
  server: HttpServer;
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
}

/** Starts everything `npm start` runs and resolves once it is serving. */
export async function startRuntime({ config, pipeline, app, invoker, log = console.log }: RuntimeOptions): Promise<Runtime> {
  let valkey: RunningValkey | undefined;
  if (!config.VALKEY_URL) {
    const binary = findServerBinary(config.VALKEY_SERVER ? { ...process.env, VALKEY_SERVER: config.VALKEY_SERVER } : process.env);
    log(`starting embedded ${binary.flavor} ${binary.version} (${binary.path}), data dir ${config.VALKEY_DATA_DIR}`);
    valkey = await launchValkey({ dataDir: config.VALKEY_DATA_DIR, port: config.VALKEY_PORT, binary, log });
  }
  const valkeyUrl = config.VALKEY_URL ?? valkey!.url;
  const conn = connectValkey(valkeyUrl, { name: "edgepipe-host", log });
  try {
    await withTimeout(new Promise((resolve) => (conn.status === "ready" ? resolve(undefined) : conn.once("ready", resolve))), 10_000, `connecting to ${valkeyUrl}`);
  } catch (err) {
    conn.disconnect();
    await valkey?.stop();
    throw new Error(`cannot reach Valkey at ${valkeyUrl}: ${(err as Error).message}`);
  }
  const env: AppEnv = {
    REDIS: upstashOverValkey(conn),
    CORS_PUBLIC_READS: config.CORS_PUBLIC_READS ? "on" : "off",
    ...(config.CORS_ORIGINS ? { CORS_ORIGINS: config.CORS_ORIGINS } : {}),
    KEY_PREFIX: config.KEY_PREFIX,
    PARTITIONS: String(config.PARTITIONS),
    CHECKPOINT_TTL_SECONDS: String(config.CHECKPOINT_TTL_SECONDS),
    RECENT_RUNS_MAX: String(config.RECENT_RUNS_MAX),
    BACKPRESSURE_MAX_LAG: String(config.BACKPRESSURE_MAX_LAG),
    FEED_BUCKETS: String(config.FEED_BUCKETS),
    MAX_BODY_BYTES: String(config.MAX_BODY_BYTES),
    STAGE_MAX_BODY_BYTES: String(config.STAGE_MAX_BODY_BYTES),
    ...config.appVars,
    ...(config.API_TOKEN ? { API_TOKEN: config.API_TOKEN } : {}),
    ...(config.STAGE_SIGNING_KEYS ? { STAGE_SIGNING_KEYS: config.STAGE_SIGNING_KEYS } : {}),
  };
  const { keys } = settingsFor(env);
  // Live streams (e.g. SSE) wake on pub/sub notifications instead of polling.
  const notifier = new ValkeyNotifier(valkeyUrl, log);
  env.NOTIFIER = notifier;
  const host = new WorkerHost({
    pipeline,
    keys,
    conn,
    invoker: invoker ?? new InProcessInvoker(app, env),
    streamMaxLen: config.STREAM_MAXLEN,
    tuning: workerTuning(config),
    env,
    log,
  });
  await host.run();
  const server = await serveHttp({ app, env, keys, pipeline, host, port: config.PORT, hostname: config.HOST, webDir: config.webDisabled ? undefined : (config.WEB_DIR ?? WEB_DIST_DIR) });
  let closing: Promise<void> | undefined;
  return {
    url: server.url,
    valkeyUrl,
    valkey,
    conn,
    env,
    host,
    server,
    close() {
      closing ??= (async () => {
        const steps: Array<[string, () => Promise<unknown>]> = [
          ["http server", () => withTimeout(server.close(), 1000, "http server close")],
          ["worker-host", () => host.close()],
          ["connections", () => Promise.all([notifier.close(), closeConnection(conn, 500)])],
          ["embedded valkey", async () => valkey?.stop()],
        ];
        for (const [name, step] of steps) {
          try {
            await step();
          } catch (err) {
            log(`[shutdown] ${name}: ${(err as Error).message}`);
          }
        }
      })();
      return closing;
    },
  };
}
