/**
 * The full flow-control measurements of issue 14 (reduced versions run in
 * tests/flow-control.test.ts), each on its own throwaway server:
 *
 *   npm run flow:fairness    one tenant floods 10,000 entries, nine send 100
 *                            each, 2 concurrent per tenant (per-tenant p99)
 *   npm run flow:rate        rate limit and token budget per key over 60 s,
 *                            two hosts at once (measured vs limit)
 *   npm run flow:priorities  2,000 low runs then 200 high through a stage
 *                            with lanes (limit 4): order and ratio
 *
 * Options: --flood N --each N --handler-ms N --seconds N --per-second N,
 * --only rate|budget.
 */
import { parseArgs } from "node:util";
import { createKeys } from "../functions/keys";
import { connectValkey } from "../worker-host/valkey";
import { fairnessScenario, prioritiesScenario, rateScenario } from "./flow-scenarios";
import { startBenchServer } from "./harness";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    flood: { type: "string", default: "10000" },
    each: { type: "string", default: "100" },
    "handler-ms": { type: "string", default: "20" },
    seconds: { type: "string", default: "60" },
    "per-second": { type: "string", default: "20" },
    only: { type: "string" },
  },
});
const what = positionals[0] ?? "fairness";

async function main(): Promise<void> {
  const server = await startBenchServer();
  const conns = [connectValkey(server.url, { name: "flow-bench-0" }), connectValkey(server.url, { name: "flow-bench-1" })];
  const keys = createKeys({ prefix: `flow${Date.now() % 100000}` });
  try {
    if (what === "fairness") {
      const flood = Number(values.flood);
      const each = Number(values.each);
      const handlerMs = Number(values["handler-ms"]);
      console.log(`fairness: 1 tenant x ${flood} + 9 tenants x ${each}, 2 concurrent per tenant, handler ${handlerMs} ms, one host`);
      const r = await fairnessScenario({ conns: [conns[0]], keys, flood, each, handlerMs, timeoutMs: 3_600_000 });
      for (const t of r.tenants) console.log(`  ${t.tenant.padEnd(6)} ${String(t.entries).padStart(6)} entries  p50 ${String(t.p50Ms).padStart(7)} ms  p99 ${String(t.p99Ms).padStart(7)} ms  last ${String(t.lastMs).padStart(7)} ms  max in handlers ${t.maxInHandlers}`);
      console.log(`  total ${Math.round(r.totalMs)} ms; handler calls ${r.calls}; attempts > 1 seen by handlers: ${r.attemptsAbove1}; dead-lettered ${r.stats.deadLettered}; retried ${r.stats.retried}; throttled ${r.stats.flow.throttled}, readmitted ${r.stats.flow.readmitted}, waiting at the end ${r.stats.flow.waiting}`);
    } else if (what === "rate") {
      const seconds = Number(values.seconds);
      const perSecond = Number(values["per-second"]);
      for (const kind of (values.only ? [values.only] : ["rate", "budget"]) as Array<"rate" | "budget">) {
        const figures = await rateScenario({ conns, keys: createKeys({ prefix: `${kind}${Date.now() % 100000}` }), kind, perSecond, seconds, warmupS: 2, keyCount: 2 });
        const unit = kind === "rate" ? "entries/s" : "tokens/s";
        console.log(`${kind}: 2 keys, 2 hosts, ${seconds} s window`);
        for (const f of figures) console.log(`  ${f.key}: ${f.measured} ${unit} of ${f.limit} (${(f.error * 100).toFixed(2)}%), per host ${f.perHost.join(" + ")} entries`);
      }
    } else if (what === "priorities") {
      const r = await prioritiesScenario({ conns: [conns[0]], keys, low: values.flood === "10000" ? 2000 : Number(values.flood), high: values.each === "100" ? 200 : Number(values.each), handlerMs: Number(values["handler-ms"]) });
      console.log(`priorities: ${r.low} low runs, then ${r.high} high, lanes limit 4, weights 8:2:1`);
      console.log(`  last high done ${r.lastHighMs} ms after they were sent, last low ${r.lastLowMs} ms; while high waited: ${r.duringHigh.high} high, ${r.duringHigh.low} low (ratio ${r.ratio}, stated ${r.statedRatio})`);
    } else throw new Error(`unknown measurement ${what}: fairness, rate or priorities`);
  } finally {
    for (const c of conns) c.disconnect();
    await server.stop();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
