/**
 * Bench row 10: what flow control costs per entry when its limits are not
 * hit. The same one-stage pass-through pipeline runs unlimited and with
 * `concurrency` (16 tenants, limit far above what is in flight), each twice,
 * alternating, on the bench's server; CPU per entry is this process (host +
 * producer) plus the server, from the same meter as rows 1a/1b.
 * Standalone: `npx tsx bench/flow-cost.ts [--quick]`.
 */
import { pathToFileURL } from "node:url";
import { z } from "zod";
import { definePipeline, defineStage, type Pipeline } from "../functions/pipeline";
import { measureThroughput, PipelineHarness, startBenchServer, type ThroughputResult } from "./harness";

export interface FlowCostResult {
  entries: number;
  unlimited: ThroughputResult;
  limited: ThroughputResult;
  /** (limited - unlimited) / unlimited CPU per entry, node + server. */
  extraCpu: number;
}

function pipelineOf(limited: boolean): Pipeline {
  const work = defineStage({
    name: "work",
    input: z.object({ tenant: z.string(), i: z.number() }),
    next: [],
    ...(limited ? { concurrency: { key: (p: { tenant: string }) => p.tenant, limit: 100_000 } } : {}),
    handle: ({ i }) => ({ result: { i } }),
  });
  return definePipeline({ name: limited ? "limited" : "unlimited", stages: [work] });
}

const cpuOf = (r: ThroughputResult) => (r.cpuUsPerArticle ? r.cpuUsPerArticle.node + r.cpuUsPerArticle.server : Infinity);

/** Measures both variants on the server at `url`, best of two runs each (the lower CPU per entry). */
export async function measureFlowCost({ url, entries = 20_000 }: { url: string; entries?: number }): Promise<FlowCostResult> {
  const payloads = Array.from({ length: entries }, (_, i) => ({ tenant: `t${i % 16}`, i }));
  const best: Partial<Record<"unlimited" | "limited", ThroughputResult>> = {};
  for (const round of [0, 1]) {
    for (const variant of round === 0 ? (["unlimited", "limited"] as const) : (["limited", "unlimited"] as const)) {
      const h = new PipelineHarness({ url, pipeline: pipelineOf(variant === "limited") });
      await h.start();
      try {
        const r = await measureThroughput(h, payloads);
        if (!best[variant] || cpuOf(r) < cpuOf(best[variant]!)) best[variant] = r;
      } finally {
        await h.close();
      }
    }
  }
  const unlimited = best.unlimited!;
  const limited = best.limited!;
  return { entries, unlimited, limited, extraCpu: Math.round((cpuOf(limited) / cpuOf(unlimited) - 1) * 1000) / 1000 };
}

/** The table row of bench/run.ts. */
export function flowCostRows(r: FlowCostResult | { notMeasured: string }): Array<{ row: string; ours: string; baseline: string; ratio: string; target: string; verdict: string }> {
  const row = "10 flow control, 1 pass-through stage, limits not hit (CPU/entry host+server)";
  if ("notMeasured" in r) return [{ row, ours: `not measured (${r.notMeasured})`, baseline: "-", ratio: "-", target: "< 20% more CPU", verdict: "-" }];
  const fmt = (x: ThroughputResult) => `${x.perSecond.toLocaleString("en-US")} entries/s, ${x.cpuUsPerArticle!.node}+${x.cpuUsPerArticle!.server} us/entry`;
  return [{ row, ours: `concurrency per tenant: ${fmt(r.limited)}`, baseline: `unlimited: ${fmt(r.unlimited)}`, ratio: `${(1 + r.extraCpu).toFixed(2)}x CPU`, target: "< 20% more CPU", verdict: r.extraCpu < 0.2 ? "met" : "NOT met" }];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  (async () => {
    const server = await startBenchServer();
    try {
      const r = await measureFlowCost({ url: server.url, entries: process.argv.includes("--quick") ? 5000 : 20_000 });
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
