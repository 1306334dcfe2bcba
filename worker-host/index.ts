/**
 * The Node host (`edgepipe/host`): the runtime `npm start` runs, the
 * worker-host and its invokers, the embedded-server launcher, the
 * Upstash-compatible REST bridge, the edge-mode stack and the loader of
 * pipeline modules. Node only; apps never need it inside a handler.
 * @example
 * import { startRuntime, loadConfig } from "edgepipe/host";
 * import { mountApp } from "edgepipe";
 * import pipeline from "./pipeline";
 * const runtime = await startRuntime({ config: loadConfig(), pipeline, app: mountApp({ name: pipeline.name, pipeline }) });
 */
export { startRuntime, type Runtime, type RuntimeOptions } from "./runtime";
export { WorkerHost, type WorkerHostOptions, type WorkerTuning } from "./host";
export { StageWorker, type StageWorkerOptions } from "./stage-worker";
export { InProcessInvoker, type Invoker } from "./invoker";
export { HttpInvoker, type HttpInvokerOptions } from "./http-invoker";
export { loadConfig, workerTuning, HostConfig, type LoadConfigOptions } from "./config";
export { launchValkey, findServerBinary, freePort, ValkeyBinaryNotFound, type RunningValkey, type LaunchOptions, type ServerBinary } from "./valkey-launcher";
export { startRestBridge, bridgeSettingsFromEnv, type RestBridge, type RestBridgeOptions } from "./rest-bridge";
export { startHttpModeStack, type HttpModeStack, type HttpModeStackOptions, type WorkerdTarget } from "./http-mode";
export { connectValkey, upstashOverValkey, runScript, type Connection } from "./valkey";
export { serveHttp, type HttpServer } from "./server";
export { ValkeyNotifier } from "./notifier";
export { choosePipeline, loadApp, resolvePipelineModule, type LoadedApp, type PipelineChoice } from "./load-app";
export { writeWorkerProject, type WorkerProject } from "./worker-project";
export { buildWorkerBundle, inspectBundle, wranglerBin, type WorkerBundle } from "./worker-bundle";
export { resetDataDir, type ResetReport } from "./data-dir";
