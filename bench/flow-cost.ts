/**
 * Bench row 10: what flow control costs per entry when its limits are not
 * hit. The same one-stage pass-through pipeline runs unlimited and with one
 * limit per tenant (16 tenants, limits far above what is in flight):
 * `concurrency` (row 10, the goal row), `rateLimit` (10b) and `budget` (10c).
 * Each variant first runs once unmeasured (the JIT warms up on its code
 * path), then `rounds` times in rotating order on the bench's server; a
 * variant's figure is its median CPU per entry (this process, host +
 * producer, plus the server, from the same meter as rows 1a/1b), and its
 * ratio is the median of its per-round ratios to the unlimited run of the
 * same round. On a shared machine one run can vary 2x; the median of paired
 * rounds is what stays put.
 * Standalone: `npx tsx bench/flow-cost.ts [--quick] [--rounds N]`.
 */
import { pathToFileURL } from "node:url";
import { z } from "zod";
import { definePipeline, defineStage, type Pipeline } from "../functions/pipeline";
import { measureThroughput, PipelineHarness, startBenchServer, type ThroughputResult } from "./harness";

export type FlowCostVariant = "unlimited" | "concurrency" | "rate" | "budget";
const VARIANTS: FlowCostVariant[] = ["unlimited", "concurrency", "rate", "budget"];

export interface FlowCostResult {
  entries: number;
  rounds: number;
  /** Per variant: the run with the median CPU per entry, and every round's CPU per entry (node + server, µs). */
  runs: Record<FlowCostVariant, { median: ThroughputResult; cpu: number[] }>;
  /** Per limited variant: median over rounds of (limited / unlimited of the same round) - 1. */
  extraCpu: Record<Exclude<FlowCostVariant, "unlimited">, number>;
}

type Payload = { tenant: string; i: number };

function pipelineOf(variant: FlowCostVariant): Pipeline {
  const key = (p: Payload) => p.tenant;
  const limits =
    variant === "concurrency" ? { concurrency: { key, limit: 100_000 } }
    : variant === "rate" ? { rateLimit: { key, perSecond: 1_000_000, burst: 1_000_000 } }
    : variant === "budget" ? { budget: { key, tokensPerMinute: 1_000_000_000, estimate: () => 100 } }
    : {};
  const work = defineStage({
    name: "work",
    input: z.object({ tenant: z.string(), i: z.number() }),
    next: [],
    ...limits,
    handle: ({ i }) => ({ result: { i } }),
  });
  return definePipeline({ name: variant, stages: [work] });
}

const cpuOf = (r: ThroughputResult) => (r.cpuUsPerArticle ? r.cpuUsPerArticle.node + r.cpuUsPerArticle.server : Infinity);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function runOnce(url: string, variant: FlowCostVariant, payloads: Payload[]): Promise<ThroughputResult> {
  const h = new PipelineHarness({ url, pipeline: pipelineOf(variant) });
  await h.start();
  try {
    return await measureThroughput(h, payloads);
  } finally {
    await h.close();
  }
}

/** Measures every variant on the server at `url` (see the file's comment). */
export async function measureFlowCost({ url, entries = 20_000, rounds = 5 }: { url: string; entries?: number; rounds?: number }): Promise<FlowCostResult> {
  const payloads = Array.from({ length: entries }, (_, i) => ({ tenant: `t${i % 16}`, i }));
  const warm = payloads;
  for (const variant of VARIANTS) await runOnce(url, variant, warm);
  const all = Object.fromEntries(VARIANTS.map((v) => [v, [] as ThroughputResult[]])) as Record<FlowCostVariant, ThroughputResult[]>;
  for (let round = 0; round < rounds; round++) {
    // Rotating order: no variant always runs first or right after the same one.
    const order = VARIANTS.map((_, k) => VARIANTS[(k + round) % VARIANTS.length]);
    for (const variant of order) all[variant].push(await runOnce(url, variant, payloads));
  }
  const runs = {} as FlowCostResult["runs"];
  for (const v of VARIANTS) {
    const cpu = all[v].map(cpuOf);
    const m = median(cpu);
    const closest = all[v].reduce((best, r) => (Math.abs(cpuOf(r) - m) < Math.abs(cpuOf(best) - m) ? r : best));
    runs[v] = { median: closest, cpu };
  }
  const extra = (v: FlowCostVariant) => Math.round((median(all[v].map((r, k) => cpuOf(r) / cpuOf(all.unlimited[k]))) - 1) * 1000) / 1000;
  return { entries, rounds, runs, extraCpu: { concurrency: extra("concurrency"), rate: extra("rate"), budget: extra("budget") } };
}

/** The table rows of bench/run.ts: 10 (concurrency, the goal), 10b (rate limit), 10c (token budget). */
export function flowCostRows(r: FlowCostResult | { notMeasured: string }): Array<{ row: string; ours: string; baseline: string; ratio: string; target: string; verdict: string }> {
  const names: Array<[Exclude<FlowCostVariant, "unlimited">, string, string]> = [
    ["concurrency", "10", "concurrency per tenant"],
    ["rate", "10b", "rate limit per tenant"],
    ["budget", "10c", "token budget per tenant"],
  ];
  const rowOf = (id: string) => `${id} flow control, 1 pass-through stage, limits not hit (median CPU/entry host+server)`;
  if ("notMeasured" in r) return names.map(([, id]) => ({ row: rowOf(id), ours: `not measured (${r.notMeasured})`, baseline: "-", ratio: "-", target: "< 20% more CPU", verdict: "-" }));
  const fmt = (v: FlowCostVariant) => {
    const x = r.runs[v].median;
    return `${x.perSecond.toLocaleString("en-US")} entries/s, ${x.cpuUsPerArticle!.node}+${x.cpuUsPerArticle!.server} us/entry (rounds: ${r.runs[v].cpu.join(", ")})`;
  };
  return names.map(([v, id, label]) => ({
    row: rowOf(id),
    ours: `${label}: ${fmt(v)}`,
    baseline: `unlimited: ${fmt("unlimited")}`,
    ratio: `${(1 + r.extraCpu[v]).toFixed(2)}x CPU (median of ${r.rounds} paired rounds)`,
    target: "< 20% more CPU",
    verdict: r.extraCpu[v] < 0.2 ? "met" : "NOT met",
  }));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  (async () => {
    const quick = process.argv.includes("--quick");
    const at = process.argv.indexOf("--rounds");
    const rounds = at > 0 ? Number(process.argv[at + 1]) : quick ? 3 : 5;
    const server = await startBenchServer();
    try {
      const r = await measureFlowCost({ url: server.url, entries: quick ? 5000 : 20_000, rounds });
      console.log(JSON.stringify(r));
      for (const row of flowCostRows(r)) console.log(`${row.row}: ${row.ours} | ${row.baseline} | ${row.ratio} (${row.verdict})`);
    } finally {
      await server.stop();
    }
  })().then(
    () => process.exit(0),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
