/**
 * One hop-latency measurement in a fresh process (see bench/latency.ts).
 * Env: VALKEY_URL, RATE, SECONDS, WARMUP_SECONDS. Prints `result <json>`.
 */
import { loadArticles } from "./articles";
import { measureLatencyPoint } from "./latency";

const url = process.env.VALKEY_URL;
if (!url) throw new Error("VALKEY_URL is required");
const { articles } = loadArticles(2000);
const point = await measureLatencyPoint({ url, articles, rate: Number(process.env.RATE), seconds: Number(process.env.SECONDS), warmupSeconds: Number(process.env.WARMUP_SECONDS) });
process.stdout.write(`result ${JSON.stringify(point)}\n`);
process.exit(0);
