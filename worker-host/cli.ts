#!/usr/bin/env node
/**
 * CLI entry: `start` runs the embedded stack (npm start); `dev` runs the edge
 * stack (npm run dev): handlers and API in workerd via `wrangler dev`, the
 * REST bridge, and the worker-host dispatching over signed HTTP.
 */
import { app, pipeline } from "../functions/index";
import { loadConfig } from "./config";
import { startRuntime } from "./runtime";
import { startRuns } from "../functions/runs";
import { redisFromEnv } from "../functions/redis";
import { settingsFor } from "../functions/config";
import { startHttpModeStack } from "./http-mode";

async function start(): Promise<void> {
  const config = loadConfig();
  const runtime = await startRuntime({ config, pipeline, app });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping (finishing in-flight work)...`);
    await runtime.close();
    console.log("stopped cleanly");
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
  console.log(`pipeline "${pipeline.name}" running: stages ${[...pipeline.stages.keys()].join(" -> ")}`);
  console.log(`valkey: ${runtime.valkeyUrl}${runtime.valkey ? " (embedded)" : ""}`);
  console.log(`listening on ${runtime.url}  (health: ${runtime.url}/health, metrics: ${runtime.url}/metrics)`);
  if (config.DEMO) {
    const { keys, settings } = settingsFor(runtime.env);
    const [runId] = await startRuns(redisFromEnv(runtime.env), [{ text: "  Hello   from the edgepipe demo  " }], { keys, pipeline, ttlSeconds: settings.CHECKPOINT_TTL_SECONDS });
    console.log(`demo run started: ${runtime.url}/v1/runs/${runId}`);
  }
}

async function dev(): Promise<void> {
  const config = loadConfig();
  const stack = await startHttpModeStack({ config, pipeline, workerd: { kind: "wrangler-dev" } });
  let stopping = false;
  // Ctrl-C reaches only this process (wrangler runs in its own process group), so the
  // worker-host commits its in-flight batches before workerd, the bridge and Valkey stop.
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping worker-host, wrangler dev, REST bridge${stack.valkey ? ", embedded valkey" : ""}...`);
    await stack.close();
    console.log("stopped cleanly");
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGHUP", () => void stop("SIGHUP"));
  console.log(`pipeline "${pipeline.name}" in workerd (wrangler dev): stages ${[...pipeline.stages.keys()].join(" -> ")}`);
  console.log(`valkey: ${stack.valkeyUrl}${stack.valkey ? " (embedded)" : ""}; handlers reach it at ${stack.restUrl}`);
  console.log(`worker-host dispatches over signed HTTP to ${config.STAGE_BASE_URL ?? stack.url}/stages/:name`);
  console.log(`listening on ${stack.url}  (health: ${stack.url}/health)`);
  if (config.DEMO) {
    const { keys, settings } = settingsFor(stack.env);
    const [runId] = await startRuns(redisFromEnv(stack.env), [{ text: "  Hello   from the edgepipe demo  " }], { keys, pipeline, ttlSeconds: settings.CHECKPOINT_TTL_SECONDS });
    console.log(`demo run started: ${stack.url}/v1/runs/${runId}`);
  }
}

const [command = "start"] = process.argv.slice(2);
const commands: Record<string, () => Promise<void>> = { start, dev };
const run = commands[command];
if (!run) {
  console.error(`unknown command ${command}; expected one of: ${Object.keys(commands).join(", ")}`);
  process.exit(2);
}
run().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
