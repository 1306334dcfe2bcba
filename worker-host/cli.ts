#!/usr/bin/env node
/**
 * CLI entry (`npm start`, `npm run dev`, the `edgepipe` bin). Runs any
 * pipeline module: `--pipeline <path>`, else PIPELINE, else package.json
 * `"edgepipe": { "pipeline" }` (this repository names the news app there).
 *   start   the embedded stack: Valkey, worker-host, HTTP app (+ web client);
 *           then the app's own `start` (the news app: demo data, RSS polling).
 *   dev     the edge stack: handlers and API in workerd via `wrangler dev` (a
 *           Worker entry generated under .wrangler/edgepipe/), the REST bridge,
 *           and the worker-host dispatching over signed HTTP.
 *   build   the Worker bundle of the pipeline, offline (`wrangler deploy --dry-run`).
 *   reset   deletes the embedded server's data (VALKEY_DATA_DIR); `start --reset` too;
 *           with --cluster N (VALKEY_CLUSTER) the embedded cluster's (<VALKEY_DATA_DIR>-cluster).
 */
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { mountApp, type AppStartContext, type EdgeApp } from "../functions/edge-app";
import type { AppEnv } from "../functions/redis";
import { loadConfig, type HostConfig } from "./config";
import { clusterDataDir, resetClusterDataDir, resetDataDir } from "./data-dir";
import { HttpInvoker } from "./http-invoker";
import { startHttpModeStack } from "./http-mode";
import { choosePipeline, loadApp, type LoadedApp } from "./load-app";
import { SHUTDOWN_MS, startRuntime } from "./runtime";
import { ensureWebBuild, WEB_DIST_DIR } from "./static-files";
import { buildWorkerBundle } from "./worker-bundle";
import { writeWorkerProject } from "./worker-project";

const USAGE = `usage: edgepipe <start|dev|build|reset> [--pipeline ./pipeline.ts] [--cluster 3] [--reset] [--outdir dist/worker]
  start   run the pipeline on the embedded server (npm start); --cluster N: on an embedded N-master cluster
  dev     run its handlers in workerd with wrangler dev (npm run dev)
  build   build its Worker bundle offline into --outdir (default dist/worker)
  reset   delete the embedded server's data (VALKEY_DATA_DIR, default .data/valkey); --cluster N: the embedded cluster's (<VALKEY_DATA_DIR>-cluster)
The pipeline module: --pipeline, else PIPELINE, else package.json "edgepipe": { "pipeline" }.`;

/** Fails fast, naming PORT, when the port is taken (instead of a server that never listens, or another one answering). */
async function assertPortFree(host: string, port: number, { zeroPicks = true }: { zeroPicks?: boolean } = {}): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((done, fail) => {
    const probe = createServer();
    probe.once("error", (err: NodeJS.ErrnoException) => {
      fail(new Error(err.code === "EADDRINUSE" ? `PORT ${port} is already in use on ${host}: stop what listens there or set PORT to a free port${zeroPicks ? " (PORT=0 picks one)" : ""}` : `cannot listen on ${host}:${port} (PORT, HOST): ${err.message}`));
    });
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => done()));
  });
}

function reset(config: HostConfig): void {
  const clusterDir = clusterDataDir(config.VALKEY_DATA_DIR);
  // --cluster N / VALKEY_CLUSTER: the embedded cluster's data (every node's, and its layout).
  const report = config.VALKEY_CLUSTER
    ? resetClusterDataDir(clusterDir, { valkeyUrl: config.VALKEY_URL, clusterNodes: config.VALKEY_CLUSTER_NODES })
    : resetDataDir(config.VALKEY_DATA_DIR, { valkeyUrl: config.VALKEY_URL });
  const what = config.VALKEY_CLUSTER ? "the embedded cluster" : "the embedded server";
  if (report.deleted.length === 0) console.log(`reset: ${report.dir} holds no ${config.VALKEY_CLUSTER ? "cluster" : "server"} data; nothing deleted`);
  else console.log(`reset: deleted ${report.deleted.join(", ")} in ${report.dir} (runs, feeds, users, stats: everything ${what} stored)`);
  if (report.kept.length > 0) console.log(`reset: kept ${report.kept.join(", ")} (not written by the launcher)`);
  if (!config.VALKEY_CLUSTER && existsSync(clusterDir)) console.log(`reset: ${clusterDir} holds an embedded cluster's data, kept; npm run reset -- --cluster 3 deletes it`);
}

/** The URLs worth clicking: web pages (when a client is served) and the API. */
function printUrls(url: string, app: EdgeApp, { web, metrics }: { web: boolean; metrics: boolean }): void {
  if (web) {
    const pages = { runs: "/#/runs", dashboard: "/#/dashboard", ...app.links };
    console.log(`web:  ${Object.entries(pages).map(([label, path]) => `${label} ${url}${path}`).join("  ")}`);
  }
  console.log(`api:  health ${url}/health  stats ${url}/v1/stats${metrics ? `  metrics ${url}/metrics` : ""}  start a run: POST ${url}/v1/runs`);
}

/** Says whether write endpoints need a token: with API_TOKEN unset anyone who reaches the API can write. */
function writesBanner(config: Pick<HostConfig, "API_TOKEN">, url: string): string {
  return config.API_TOKEN
    ? "writes: need Authorization: Bearer <API_TOKEN>"
    : `writes: OPEN - API_TOKEN is unset, so anyone who reaches ${url} can start runs, redrive dead letters and write app data (set API_TOKEN, at least 8 characters, to require a bearer token)`;
}

/** Runs the app's own `start` in the background; returns its abort. */
function startAppTasks(app: EdgeApp, ctx: Omit<AppStartContext, "signal">): AbortController {
  const stop = new AbortController();
  if (app.start) {
    Promise.resolve()
      .then(() => app.start!({ ...ctx, signal: stop.signal }))
      .catch((err) => !stop.signal.aborted && console.error(`${app.name}: start failed: ${(err as Error).message}`));
  }
  return stop;
}

/**
 * Ctrl-C / SIGTERM (and SIGHUP for dev): stop once, cleanly, then exit 0.
 * `close` bounds its own waits; should it still not be done after
 * `forceAfterMs` (an event loop starved on a loaded machine), or on a second
 * Ctrl-C, the process exits anyway: whatever was not committed stays pending
 * in the server and another consumer reclaims it, so nothing is lost.
 */
function onSignals(signals: NodeJS.Signals[], what: string, close: () => Promise<void>, forceAfterMs: number): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      console.log(`${signal} again: exiting now (uncommitted work stays pending for another consumer)`);
      process.exit(130);
    }
    stopping = true;
    console.log(`\n${signal}: stopping ${what}...`);
    setTimeout(() => {
      console.log(`still stopping after ${forceAfterMs} ms: exiting now (uncommitted work stays pending for another consumer)`);
      process.exit(0);
    }, forceAfterMs).unref();
    await close();
    console.log("stopped cleanly");
    process.exit(0);
  };
  for (const s of signals) process.on(s, () => void stop(s));
}

function describe(loaded: LoadedApp): string {
  const { app, choice } = loaded;
  const stages = [...app.pipeline.stages.keys()].join(" -> ");
  return `pipeline "${app.pipeline.name}" (${choice.specifier}, from ${choice.from}${app.routes ? `; app ${app.name}` : ""}): stages ${stages}`;
}

async function start(loaded: LoadedApp, config: HostConfig, { resetFirst }: { resetFirst: boolean }): Promise<void> {
  const { app } = loaded;
  if (resetFirst) reset(config);
  await assertPortFree(config.HOST, config.PORT);
  // Fast when web/dist exists; a fresh checkout builds the client once.
  const webDir = config.webDisabled ? undefined : (config.WEB_DIR ?? WEB_DIST_DIR);
  const web = webDir !== undefined && (config.WEB_DIR !== undefined || ensureWebBuild());
  // With STAGE_BASE_URL (e.g. the deployed Worker) handlers run there, called over signed HTTP.
  let invoker: HttpInvoker | undefined;
  if (config.STAGE_BASE_URL) {
    if (!config.STAGE_SIGNING_KEYS) throw new Error("STAGE_BASE_URL is set: set STAGE_SIGNING_KEYS to the keys the Worker has (wrangler secret put STAGE_SIGNING_KEYS)");
    invoker = new HttpInvoker({ baseUrl: config.STAGE_BASE_URL, signingKeys: config.STAGE_SIGNING_KEYS });
    console.log(`stage handlers: ${config.STAGE_BASE_URL}/stages/:name over signed HTTP`);
  }
  const runtime = await startRuntime({ config, pipeline: app.pipeline, app: mountApp(app), invoker });
  let tasks: AbortController | undefined;
  onSignals(["SIGINT", "SIGTERM"], "(finishing in-flight work)", async () => {
    tasks?.abort();
    await runtime.close();
  }, SHUTDOWN_MS + 1000);
  console.log(describe(loaded));
  if (runtime.mode === "cluster") console.log(`valkey cluster: ${runtime.valkeyUrl}${runtime.cluster ? ` (embedded, ${runtime.cluster.masters.length} masters; data in ${runtime.cluster.dataDir} is kept between starts)` : ""}`);
  else console.log(`valkey: ${runtime.valkeyUrl}${runtime.valkey ? ` (embedded; data in ${config.VALKEY_DATA_DIR} is kept between starts, npm run reset deletes it)` : ""}`);
  console.log(`listening on ${runtime.url}`);
  console.log(writesBanner(config, runtime.url));
  printUrls(runtime.url, app, { web, metrics: true });
  tasks = startAppTasks(app, { env: runtime.env, url: runtime.url, demo: config.DEMO, log: console.log });
}

async function dev(loaded: LoadedApp, config: HostConfig): Promise<void> {
  const { app, path } = loaded;
  if (config.PORT === 0) throw new Error("npm run dev needs a fixed PORT (wrangler dev listens on the port it is given): set PORT to a free port, e.g. PORT=8787");
  await assertPortFree(config.HOST, config.PORT, { zeroPicks: false });
  // wrangler dev serves web/dist as the Worker's static assets.
  const web = ensureWebBuild();
  const project = writeWorkerProject({ module: path, name: app.pipeline.name, webDir: web ? WEB_DIST_DIR : undefined });
  console.log(`worker entry for ${loaded.choice.specifier}: ${project.entryPath} (config ${project.configPath})`);
  const stack = await startHttpModeStack({ config, pipeline: app.pipeline, workerd: { kind: "wrangler-dev", configPath: project.configPath } });
  let tasks: AbortController | undefined;
  // Ctrl-C reaches only this process (wrangler runs in its own process group), so the
  // worker-host commits its in-flight batches before workerd, the bridge and Valkey stop.
  onSignals(["SIGINT", "SIGTERM", "SIGHUP"], `worker-host, wrangler dev, REST bridge${stack.valkey ? ", embedded valkey" : stack.cluster ? ", embedded cluster" : ""}`, async () => {
    tasks?.abort();
    await stack.close();
  }, 20_000);
  console.log(`${describe(loaded)}, in workerd (wrangler dev)`);
  if (stack.mode === "cluster") console.log(`valkey cluster: ${stack.valkeyUrl}${stack.cluster ? ` (embedded, ${stack.cluster.masters.length} masters)` : ""}; handlers reach it at ${stack.restUrl} (the bridge routes each command by its key)`);
  else console.log(`valkey: ${stack.valkeyUrl}${stack.valkey ? " (embedded)" : ""}; handlers reach it at ${stack.restUrl}`);
  console.log(`worker-host dispatches over signed HTTP to ${config.STAGE_BASE_URL ?? stack.url}/stages/:name`);
  console.log(`listening on ${stack.url}`);
  console.log(writesBanner(config, stack.url));
  // /metrics is the Node server's; workerd does not serve it.
  printUrls(stack.url, app, { web, metrics: false });
  // wrangler dev fires no cron triggers; the app's start (e.g. RSS polling) runs here as under npm start.
  const env: AppEnv = stack.env;
  tasks = startAppTasks(app, { env, url: stack.url, demo: config.DEMO, log: console.log });
}

async function build(loaded: LoadedApp, outdir: string): Promise<void> {
  const project = writeWorkerProject({ module: loaded.path, name: loaded.app.pipeline.name });
  const bundle = await buildWorkerBundle({ outdir, configPath: project.configPath });
  console.log(`${describe(loaded)}\nworker bundle: ${bundle.scriptPath} (${bundle.bytes} bytes, ${bundle.gzipBytes} gzip)${bundle.nodeImports.length ? `; imports ${bundle.nodeImports.join(", ")} (needs nodejs_compat)` : ""}`);
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      pipeline: { type: "string" },
      cluster: { type: "string" },
      reset: { type: "boolean", default: false },
      outdir: { type: "string", default: "dist/worker" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const [command = "start"] = positionals;
  // --cluster N: an embedded local cluster of N masters (the same as VALKEY_CLUSTER=N).
  if (values.cluster !== undefined) process.env.VALKEY_CLUSTER = values.cluster;
  if (values.help || command === "help") return console.log(USAGE);
  if (!["start", "dev", "build", "reset"].includes(command)) throw new Error(`unknown command ${command}\n${USAGE}`);
  if (command === "reset") return reset(loadConfig());
  const choice = choosePipeline({ flag: values.pipeline });
  // npm runs scripts in the package root: a path typed in a subdirectory (npm start -- --pipeline ./p.ts)
  // is found from where npm was invoked (INIT_CWD) when the root has no such file.
  const invokedIn = process.env.INIT_CWD;
  const typed = choice.from !== "package.json" && invokedIn && !existsSync(resolve(choice.specifier)) && existsSync(resolve(invokedIn, choice.specifier));
  const loaded = await loadApp(choice, typed ? invokedIn : process.cwd());
  // The host's variables and the app's, checked together: one error lists every bad one.
  const config = loadConfig(process.env, { appSettings: loaded.app.settings });
  if (command === "start") return start(loaded, config, { resetFirst: values.reset });
  if (command === "dev") return dev(loaded, config);
  return build(loaded, resolve(values.outdir));
}

main(process.argv.slice(2)).catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
