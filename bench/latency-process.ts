/**
 * One hop-latency measurement in a fresh process (see bench/latency.ts).
 * Env: VALKEY_URL, RATE, SECONDS, WARMUP_SECONDS, MODE: ours (default), raw
 * (baseline C, bench/raw-relay.ts) or floor (bench/floor.ts). Prints
 * `result <json>`.
 */
import { loadArticles } from "./articles";
import { measureFloor } from "./floor";
import { measureLatencyPoint } from "./latency";
import { measureRawRelayPoint } from "./raw-relay";

const url = process.env.VALKEY_URL;
if (!url) throw new Error("VALKEY_URL is required");
const mode = process.env.MODE ?? "ours";
const seconds = Number(process.env.SECONDS);
let point: unknown;
if (mode === "floor") point = await measureFloor(url, seconds);
else {
  const { articles } = loadArticles(2000);
  const options = { url, articles, rate: Number(process.env.RATE), seconds, warmupSeconds: Number(process.env.WARMUP_SECONDS) };
  point = mode === "raw" ? await measureRawRelayPoint(options) : await measureLatencyPoint(options);
}
process.stdout.write(`result ${JSON.stringify(point)}\n`);
process.exit(0);
