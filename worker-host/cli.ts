#!/usr/bin/env node
/**
 * CLI entry: `start` runs the embedded stack (npm start).
 */
import { app, pipeline } from "../functions/index";
import { loadConfig } from "./config";
import { startRuntime } from "./runtime";
import { startRuns } from "../functions/runs";
import { redisFromEnv } from "../functions/redis";
import { settingsFor } from "../functions/config";
import { ensureWebBuild } from "./static-files";

async function start(): Promise<void> {
  const config = loadConfig();
  // Fast when web/dist exists; a fresh checkout builds the client once.
  if (config.WEB_DIR === undefined) ensureWebBuild();
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

const [command = "start"] = process.argv.slice(2);
const commands: Record<string, () => Promise<void>> = { start };
const run = commands[command];
if (!run) {
  console.error(`unknown command ${command}; expected one of: ${Object.keys(commands).join(", ")}`);
  process.exit(2);
}
run().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
