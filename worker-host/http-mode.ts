/**
 * The edge-mode stack on one machine: Valkey (embedded or VALKEY_URL), the
 * Upstash-compatible REST bridge, the handlers and feed API in workerd
 * (`wrangler dev`, or Miniflare running the built bundle), and the worker-host
 * dispatching to them over signed HTTP. `npm run dev`, the edge end-to-end test
 * and the HTTP throughput measurement all start it through `startHttpModeStack`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Miniflare } from "miniflare";
import { randomHex } from "../functions/envelope";
import { settingsFor } from "../functions/config";
import type { Pipeline } from "../functions/pipeline";
import type { AppEnv } from "../functions/redis";
import { workerTuning, type HostConfig } from "./config";
import { WorkerHost } from "./host";
import { tracingFromEnv } from "./tracing";
import { HttpInvoker } from "./http-invoker";
import { bridgeSettingsFromEnv, startRestBridge, type RestBridge } from "./rest-bridge";
import { closeConnection, connectValkey, type Connection } from "./valkey";
import type { RunningValkey } from "./valkey-launcher";
import type { RunningCluster } from "./cluster-launcher";
import { connectCluster, nodeOptionsFromUrl, upstashFor } from "./data-store";
import { openStore } from "./runtime";
import { startFsyncBarrier, type ValkeyFsyncBarrier } from "./fsync-barrier";
import { createKeys } from "../functions/keys";
import { wranglerBin } from "./worker-bundle";
import { listenersOf, watchProcessGroup } from "./process-group";

/** Where the handlers run. */
export type WorkerdTarget =
  /** `wrangler dev` for a wrangler config (the one `writeWorkerProject` generates) on config.HOST:config.PORT (API, stage handlers, web assets). */
  | { kind: "wrangler-dev"; configPath: string }
  /** Miniflare running an already built bundle (dist/worker/worker.js), on a free loopback port. */
  | { kind: "miniflare"; scriptPath: string; compatibilityDate?: string };

export interface HttpModeStackOptions {
  config: HostConfig;
  pipeline: Pipeline;
  workerd: WorkerdTarget;
  /** Start the worker-host (default true); false serves only the API and handlers. */
  startHost?: boolean;
  /** Extra vars for the Worker. */
  vars?: Record<string, string>;
  log?: (line: string) => void;
}

export interface HttpModeStack {
  /** The public API and the stage handlers (workerd). */
  url: string;
  /** The server's URL, or on a cluster its seed list. */
  valkeyUrl: string;
  /** One server or a Valkey Cluster (chosen as under npm start). */
  mode: "standalone" | "cluster";
  valkey?: RunningValkey;
  /** The embedded local cluster (VALKEY_CLUSTER / --cluster N). */
  cluster?: RunningCluster;
  bridge?: RestBridge;
  /** Bridge (or Upstash) URL and token the Worker uses. */
  restUrl: string;
  restToken: string;
  signingKeys: string;
  conn: Connection;
  /** Node-side env (client over iovalkey) for reads in tests and tools. */
  env: AppEnv;
  host?: WorkerHost;
  invoker: HttpInvoker;
  /** Stops everything in order: worker-host (commits in flight), workerd, bridge, connection, server. */
  close(): Promise<void>;
}

/** Reads `compatibility_date` from wrangler.toml (one source of truth for tests and tools). */
export function compatibilityDateFromWranglerToml(path = "wrangler.toml"): string {
  const m = /^compatibility_date\s*=\s*"([0-9-]+)"/m.exec(readFileSync(path, "utf8"));
  if (!m) throw new Error(`no compatibility_date in ${path}`);
  return m[1];
}

/** Reads the `[vars]` table of wrangler.toml (flat string values only). */
export function varsFromWranglerToml(path = "wrangler.toml"): Record<string, string> {
  const text = readFileSync(path, "utf8");
  const section = /^\[vars\]\s*$([\s\S]*?)(?=^\[|$(?![\s\S]))/m.exec(text)?.[1] ?? "";
  const vars: Record<string, string> = {};
  for (const line of section.split("\n")) {
    const m = /^\s*([A-Z0-9_]+)\s*=\s*"([^"]*)"\s*$/.exec(line);
    if (m) vars[m[1]] = m[2];
  }
  return vars;
}

/** A secret as it may appear in logs: its first 4 characters and its length. */
export function maskSecret(secret: string): string {
  return `${secret.slice(0, 4)}... (${secret.length} chars)`;
}

function withTimeout<T>(work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

async function waitForHttp(url: string, { timeoutMs, exited }: { timeoutMs: number; exited: () => string | undefined }): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const gone = exited();
    if (gone) throw new Error(gone);
    try {
      // Any answer means workerd serves; /health may say 503 until Valkey is reachable.
      await fetch(url, { signal: AbortSignal.timeout(10_000) });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms`);
}

interface RunningWorkerd {
  url: string;
  stop(): Promise<void>;
}

async function startWranglerDev(configPath: string, config: HostConfig, vars: Record<string, string>, log: (line: string) => void): Promise<RunningWorkerd> {
  const root = process.cwd();
  // Secrets go through a git-ignored 0600 file, not the command line (visible in `ps`).
  const envFile = join(root, ".wrangler", "edgepipe-dev.env");
  mkdirSync(dirname(envFile), { recursive: true });
  writeFileSync(envFile, Object.entries(vars).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join("\n") + "\n", { mode: 0o600 });
  chmodSync(envFile, 0o600);
  const args = [wranglerBin(root), "dev", "--config", configPath, "--port", String(config.PORT), "--ip", config.HOST, "--env-file", envFile, "--show-interactive-dev-session=false", "--log-level", "warn"];
  // Own process group, so stopping it reaches workerd and esbuild too, after the worker-host has finished.
  const child: ChildProcess = spawn(process.execPath, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"], detached: true, env: { ...process.env, WRANGLER_SEND_METRICS: "false" } });
  // A kill -9 of this process must not leave wrangler and workerd running (they hold PORT): a watchdog stops the group.
  const watchdog = child.pid ? watchProcessGroup(child.pid) : { stop() {} };
  let exitNote: string | undefined;
  child.on("exit", (code, signal) => {
    exitNote = `wrangler dev exited (${signal ?? code})`;
    watchdog.stop();
  });
  const portInUse = `PORT ${config.PORT} is already in use on ${config.HOST} (wrangler dev could not listen there): stop what listens there or set PORT to a free port`;
  let bindFailure: string | undefined;
  const forward = (chunk: Buffer) => {
    for (const line of chunk.toString().split("\n")) {
      if (/EADDRINUSE|address already in use/i.test(line)) bindFailure ??= portInUse;
      // workerd offline cannot fetch the Request.cf data; that warning is harmless noise.
      if (line.trim() && !/Request\.cf|workers\.cloudflare\.com|GetAddrInfoReqWrap|callbackTrampoline/.test(line)) log(`[wrangler] ${line}`);
    }
  };
  child.stdout?.on("data", forward);
  child.stderr?.on("data", forward);
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      if (child.pid) process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  const onExit = () => killGroup("SIGTERM");
  process.on("exit", onExit);
  const host = config.HOST.includes(":") ? `[${config.HOST}]` : config.HOST;
  const url = `http://${host}:${config.PORT}`;
  try {
    await waitForHttp(`${url}/health`, { timeoutMs: 90_000, exited: () => bindFailure ?? exitNote });
    // An answer proves only that something serves PORT: it must be this session's workerd, never an older one.
    const listeners = child.pid ? listenersOf(config.PORT) : undefined;
    if (listeners && !listeners.some((l) => l.pgid === child.pid)) {
      const others = listeners.map((l) => l.pid).join(", ");
      throw new Error(`${portInUse}${others ? ` (pid ${others} listens there)` : ""}`);
    }
    if (bindFailure) throw new Error(bindFailure);
  } catch (err) {
    killGroup("SIGKILL");
    watchdog.stop();
    process.off("exit", onExit);
    throw err;
  }
  return {
    url,
    async stop() {
      process.off("exit", onExit);
      if (exitNote) return;
      const exited = new Promise<void>((r) => child.once("exit", () => r()));
      killGroup("SIGTERM");
      const timer = setTimeout(() => killGroup("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
      watchdog.stop();
    },
  };
}

async function startMiniflare(target: Extract<WorkerdTarget, { kind: "miniflare" }>, config: HostConfig, vars: Record<string, string>): Promise<RunningWorkerd> {
  const { Miniflare } = await import("miniflare");
  const mf: Miniflare = new Miniflare({
    modules: [{ type: "ESModule", path: resolve(target.scriptPath) }],
    modulesRoot: dirname(resolve(target.scriptPath)),
    compatibilityDate: target.compatibilityDate ?? compatibilityDateFromWranglerToml(),
    bindings: vars,
    host: config.HOST,
    port: config.PORT,
  });
  const url = (await mf.ready).toString().replace(/\/$/, "");
  return { url, stop: () => mf.dispose() };
}

/**
 * Starts the edge-mode stack and resolves once the worker-host dispatches to workerd.
 * @example
 * const stack = await startHttpModeStack({ config: loadConfig(), pipeline, workerd: { kind: "wrangler-dev", configPath } });
 * console.log(stack.url); // the public API, served by workerd
 * await stack.close();
 */
export async function startHttpModeStack({ config, pipeline, workerd, startHost = true, vars = {}, log = console.log }: HttpModeStackOptions): Promise<HttpModeStack> {
  const cleanup: Array<[string, () => Promise<unknown>]> = [];
  const close = async () => {
    for (const [name, step] of cleanup.splice(0).reverse()) {
      try {
        await step();
      } catch (err) {
        log(`[shutdown] ${name}: ${(err as Error).message}`);
      }
    }
  };
  try {
    // One server or a Valkey Cluster, chosen as under npm start (the embedded cluster: VALKEY_CLUSTER / --cluster N).
    const store = await openStore(config, log);
    cleanup.push(["embedded valkey", () => store.stopEmbedded()]);
    const { conn, valkey, cluster, valkeyUrl } = store;
    cleanup.push(["valkey connection", () => closeConnection(conn, 3000)]);

    // DURABLE_ACCEPT=on: checked before anything serves; the bridge answers the Worker's WAITAOF with this barrier.
    let barrier: ValkeyFsyncBarrier | undefined;
    if (config.DURABLE_ACCEPT) {
      barrier = await startFsyncBarrier(conn, { markKey: createKeys({ prefix: config.KEY_PREFIX }).fsyncMark(), timeoutMs: config.DURABLE_ACCEPT_TIMEOUT_MS, embedded: valkey !== undefined, log });
      cleanup.push(["fsync barrier", () => barrier!.close()]);
    }

    let bridge: RestBridge | undefined;
    let restUrl: string;
    let restToken: string;
    const bridgeSettings = bridgeSettingsFromEnv(config);
    if (bridgeSettings) {
      // Its own user when BRIDGE_VALKEY_URL names one (npm run acl): the handlers' commands then run with the bridge's privileges only.
      // On a cluster that user must exist on every node; the bridge reaches the same seeds with its credentials.
      const bridgeConn = !config.BRIDGE_VALKEY_URL
        ? conn
        : store.seeds
          ? connectCluster(store.seeds, { nodeOptions: nodeOptionsFromUrl(config.BRIDGE_VALKEY_URL), name: "edgepipe-rest-bridge", log })
          : connectValkey(config.BRIDGE_VALKEY_URL, { name: "edgepipe-rest-bridge", log });
      if (bridgeConn !== conn) cleanup.push(["bridge valkey connection", async () => bridgeConn.disconnect()]);
      bridge = await startRestBridge({ conn: bridgeConn, token: bridgeSettings.token, hostname: bridgeSettings.hostname, port: bridgeSettings.port, fsyncBarrier: barrier, log }).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "EADDRINUSE") throw err;
        throw new Error(
          `UPSTASH_REDIS_REST_URL: port ${bridgeSettings.port} on ${bridgeSettings.hostname} is already in use, so the REST bridge cannot listen there: stop what listens there or set UPSTASH_REDIS_REST_URL to a free loopback port (e.g. http://127.0.0.1:8078)`,
        );
      });
      cleanup.push(["rest bridge", () => bridge!.close()]);
      restUrl = bridge.url;
      restToken = bridge.token;
      // The token is a secret: the log shows its first characters only (it is in .wrangler/edgepipe-dev.env, 0600).
      log(`REST bridge (Upstash protocol) on ${bridge.url}${bridgeSettings.generatedToken ? `, token ${maskSecret(bridge.token)} (generated; set UPSTASH_REDIS_REST_TOKEN to fix it)` : ""}`);
    } else {
      if (!config.VALKEY_URL) throw new Error("UPSTASH_REDIS_REST_URL points at a remote endpoint: set VALKEY_URL to the same database so the worker-host reads the same streams");
      if (!config.UPSTASH_REDIS_REST_TOKEN) throw new Error("UPSTASH_REDIS_REST_URL is remote but UPSTASH_REDIS_REST_TOKEN is not set");
      restUrl = config.UPSTASH_REDIS_REST_URL!;
      restToken = config.UPSTASH_REDIS_REST_TOKEN;
      log(`handlers reach Valkey at ${restUrl} (no local bridge)`);
    }

    const signingKeys = config.STAGE_SIGNING_KEYS ?? `dev:${randomHex(24)}`;
    // The same settings the in-process runtime hands its handlers (worker-host/runtime.ts).
    const appVars: Record<string, string> = {
      KEY_PREFIX: config.KEY_PREFIX,
      PARTITIONS: String(store.partitions),
      CHECKPOINT_TTL_SECONDS: String(config.CHECKPOINT_TTL_SECONDS),
      FEED_BUCKETS: String(store.feedBuckets),
      IDEMPOTENCY_TTL_SECONDS: String(config.IDEMPOTENCY_TTL_SECONDS),
      MAX_BODY_BYTES: String(config.MAX_BODY_BYTES),
      STAGE_MAX_BODY_BYTES: String(config.STAGE_MAX_BODY_BYTES),
      RECENT_RUNS_MAX: String(config.RECENT_RUNS_MAX),
      BACKPRESSURE_MAX_LAG: String(config.BACKPRESSURE_MAX_LAG),
      DURABLE_ACCEPT: config.DURABLE_ACCEPT ? "on" : "off",
      DURABLE_ACCEPT_TIMEOUT_MS: String(config.DURABLE_ACCEPT_TIMEOUT_MS),
      ...config.appVars,
    };
    const workerVars: Record<string, string> = {
      ...appVars,
      // Local dev without a token keeps writes open, as under npm start (the start banner says so); a deployed Worker refuses them.
      ...(config.API_TOKEN ? { API_TOKEN: config.API_TOKEN } : { ALLOW_OPEN_WRITES: "on" }),
      ...(config.API_READ_TOKEN ? { API_READ_TOKEN: config.API_READ_TOKEN } : {}),
      // A tracing host: the handlers in workerd send their spans to the same collector (their service.name is the Worker's own).
      ...(config.OTEL_EXPORTER_OTLP_ENDPOINT ? { OTEL_EXPORTER_OTLP_ENDPOINT: config.OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL: config.OTEL_EXPORTER_OTLP_PROTOCOL } : {}),
      ...(config.OTEL_EXPORTER_OTLP_ENDPOINT && config.OTEL_EXPORTER_OTLP_HEADERS ? { OTEL_EXPORTER_OTLP_HEADERS: config.OTEL_EXPORTER_OTLP_HEADERS } : {}),
      ...vars,
      UPSTASH_REDIS_REST_URL: restUrl,
      UPSTASH_REDIS_REST_TOKEN: restToken,
      STAGE_SIGNING_KEYS: signingKeys,
    };
    const running =
      workerd.kind === "wrangler-dev"
        ? await startWranglerDev(workerd.configPath, config, workerVars, log)
        : await startMiniflare(workerd, config, { ...varsFromWranglerToml(), ...workerVars });
    cleanup.push(["workerd", () => running.stop()]);

    const invoker = new HttpInvoker({ baseUrl: config.STAGE_BASE_URL ?? running.url, signingKeys, maxConcurrency: Math.max(4, config.CONCURRENCY * pipeline.stages.size) });
    cleanup.push(["http invoker", () => invoker.close()]);

    const env: AppEnv = { REDIS: upstashFor(conn), ...appVars, ...(barrier ? { FSYNC_BARRIER: barrier } : {}) };
    let host: WorkerHost | undefined;
    if (startHost) {
      const { keys } = settingsFor(env);
      const tracing = tracingFromEnv(config);
      if (tracing) cleanup.push(["tracing", () => tracing.shutdown()]);
      host = new WorkerHost({
        pipeline,
        keys,
        conn,
        invoker,
        streamMaxLen: config.STREAM_MAXLEN,
        duePollMs: config.DUE_POLL_MS,
        recentRunsMax: config.RECENT_RUNS_MAX,
        tuning: { ...workerTuning(config), ...(tracing ? { tracer: tracing.tracer } : {}) },
        env,
        log,
      });
      await host.run();
      // Stopped first on close: in-flight batches still need workerd and Valkey to commit.
      // Bounded, so a server that is already gone cannot hold the rest of the shutdown.
      cleanup.push(["worker-host", () => withTimeout(host!.close(), 15_000, "worker-host did not stop within 15 s")]);
    }
    return { url: running.url, valkeyUrl, mode: store.mode, valkey, cluster, bridge, restUrl, restToken, signingKeys, conn, env, host, invoker, close };
  } catch (err) {
    await close();
    throw err;
  }
}
