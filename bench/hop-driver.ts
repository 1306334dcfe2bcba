/**
 * Focused driver for runtime-core speed work (not part of `npm run bench`):
 * the pass-through pipeline over N articles (articles/s and CPU/article, Node
 * and server) and, optionally, one hop-latency point in a fresh child process.
 * Usage: npx tsx bench/hop-driver.ts [articles=20000] [--latency RATE]
 */
import { spawnSync } from "node:child_process";
import { loadArticles } from "./articles";
import { PipelineHarness, measureThroughput, startBenchServer } from "./harness";
import { passThroughPipeline } from "./pass-through-pipeline";
import { preciseNow } from "./pass-through-pipeline";

const n = Number(process.argv[2] ?? 20000);
const rateArg = process.argv.indexOf("--latency");
const server = await startBenchServer();
try {
  const { articles } = loadArticles(n);
  const h = new PipelineHarness({ url: server.url, pipeline: passThroughPipeline() });
  await h.start();
  await measureThroughput(h, articles.slice(0, 2000).map((a) => ({ ...a, t: preciseNow(), t0: preciseNow() })));
  const r = await measureThroughput(h, articles.map((a) => ({ ...a, t: preciseNow(), t0: preciseNow() })));
  await h.close();
  console.log(`pass-through ${r.articles} art: ${r.perSecond} art/s, CPU/art node ${r.cpuUsPerArticle?.node} us, server ${r.cpuUsPerArticle?.server} us`);
  if (rateArg > 0) {
    const rate = process.argv[rateArg + 1];
    const out = spawnSync(process.execPath, [...(process.env.LATENCY_NODE_FLAGS ?? "").split(" ").filter(Boolean), "--import", "tsx", process.env.LATENCY_SCRIPT ?? "bench/latency-process.ts"], { env: { ...process.env, VALKEY_URL: server.url, RATE: rate, SECONDS: "5", WARMUP_SECONDS: "1" }, encoding: "utf8" });
    if (process.env.LATENCY_STDOUT) (await import("node:fs")).writeFileSync(process.env.LATENCY_STDOUT, out.stdout);
    const line = out.stdout.split("\n").find((l) => l.startsWith("result "));
    if (!line) console.log(out.stderr);
    else {
      const p = JSON.parse(line.slice(7));
      const worst = Object.values(p.hops as Record<string, { p50: number; p99: number; p999: number }>).sort((a, b) => b.p99 - a.p99)[0];
      console.log(`latency @${rate}/s: worst hop p50/p99/p99.9 ${JSON.stringify(worst)}; e2e ${JSON.stringify(p.endToEnd)}; eld p99 ${p.eventLoopDelayMs.p99}; gc ${JSON.stringify(p.gcPausesMs)}; load ${p.loadAvg1m}`);
    }
  }
} finally {
  await server.stop();
}
process.exit(0);
