/**
 * One hop-latency measurement in a fresh process (see bench/latency.ts).
 * Env: VALKEY_URL, RATE, SECONDS, WARMUP_SECONDS; RAW=1 measures baseline C
 * (bench/raw-relay.ts) instead of edgepipe. Prints `result <json>`.
 */
import { loadArticles } from "./articles";
import { measureLatencyPoint } from "./latency";
import { measureRawRelayPoint } from "./raw-relay";

const url = process.env.VALKEY_URL;
if (!url) throw new Error("VALKEY_URL is required");
const { articles } = loadArticles(2000);
const options = { url, articles, rate: Number(process.env.RATE), seconds: Number(process.env.SECONDS), warmupSeconds: Number(process.env.WARMUP_SECONDS) };
const point = process.env.RAW === "1" ? await measureRawRelayPoint(options) : await measureLatencyPoint(options);
process.stdout.write(`result ${JSON.stringify(point)}\n`);
process.exit(0);
