/**
 * The workerd side of the chaos suite's HTTP mode, as its own process (so it
 * can be killed with -9 and started again): the REST bridge and Miniflare
 * running the chaos app's Worker bundle, no worker-host. Configured by the
 * same environment as `npm run dev` (VALKEY_URL, PORT, UPSTASH_REDIS_REST_URL,
 * UPSTASH_REDIS_REST_TOKEN, STAGE_SIGNING_KEYS, the app's variables).
 *   tsx bench/chaos/stage-server.ts --bundle <dir>/worker.js
 */
import { parseArgs } from "node:util";
import { loadConfig } from "../../worker-host/config";
import { startHttpModeStack } from "../../worker-host/http-mode";
import chaosApp from "./chaos-app";

const { values } = parseArgs({ options: { bundle: { type: "string" } } });
if (!values.bundle) throw new Error("usage: stage-server.ts --bundle <worker.js>");
const config = loadConfig(process.env, { appSettings: chaosApp.settings });
const stack = await startHttpModeStack({ config, pipeline: chaosApp.pipeline, workerd: { kind: "miniflare", scriptPath: values.bundle }, startHost: false, log: (l) => console.log(l) });
console.log(`stage server on ${stack.url}`);
const stop = async () => {
  await stack.close();
  process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
