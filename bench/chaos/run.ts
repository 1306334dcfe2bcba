/**
 * `npm run chaos`: seeded chaos runs of the news app (see harness.ts for one
 * run, oracle.ts for the checks) and a summary table per fault kind.
 *   npm run chaos -- --seed 1 --runs 10 --hosts 2 --fsync everysec
 * Exits 1 when any run broke a guarantee (lost, duplicated, a poison article
 * not dead-lettered with its reason, a stalled host, a run delayed past the bound).
 */
import { appendFileSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { findServerBinary } from "../../worker-host/valkey-launcher";
import { FAULT_KINDS, runChaos, type FaultKind, type RunResult } from "./harness";
import { summarize } from "./summary";

const { values } = parseArgs({
  options: {
    seed: { type: "string", default: "1" },
    runs: { type: "string", default: "1" },
    hosts: { type: "string", default: "2" },
    fsync: { type: "string", default: "always" },
    articles: { type: "string", default: "1500" },
    users: { type: "string", default: "200" },
    faults: { type: "string", default: "4" },
    kinds: { type: "string" },
    stages: { type: "string", default: "in-process" },
    "host-start": { type: "string", default: "bundle" },
    rate: { type: "string", default: "60" },
    "visibility-ms": { type: "string", default: "5000" },
    verbose: { type: "boolean", default: false },
    out: { type: "string" },
    summarize: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

const USAGE = `usage: npm run chaos -- [--seed N] [--runs N] [--hosts 1|2] [--fsync always|everysec] [--articles N] [--users N]
                        [--faults N] [--kinds ${FAULT_KINDS.join(",")}] [--stages in-process|workerd]
                        [--rate articles/s] [--visibility-ms N] [--host-start bundle|tsx] [--verbose] [--out runs.jsonl]
       npm run chaos -- --summarize runs.jsonl   (one table over the runs of earlier --out files)
Run r uses seed N+r. The server is VALKEY_SERVER, else valkey-server, else redis-server.`;

function int(name: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be an integer from ${min} to ${max}\n${USAGE}`);
  return n;
}

async function main(): Promise<number> {
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (values.summarize) {
    const all = readFileSync(values.summarize, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as RunResult);
    // JSON has no Infinity: a Ctrl-C that hung was written as null.
    for (const r of all) r.ctrlCMs = r.ctrlCMs.map((m) => (m === null ? Infinity : m));
    const groups = new Map<string, RunResult[]>();
    for (const r of all) groups.set(`${r.server}|${r.hosts}|${r.fsync}`, [...(groups.get(`${r.server}|${r.hosts}|${r.fsync}`) ?? []), r]);
    let failed = false;
    for (const runs of groups.values()) {
      const s = summarize(runs);
      failed ||= s.failed;
      console.log(`${s.table}\n`);
    }
    return failed ? 1 : 0;
  }
  const seed = int("seed", values.seed!, 0, 2 ** 31);
  const runs = int("runs", values.runs!, 1, 1000);
  const hosts = int("hosts", values.hosts!, 1, 2) as 1 | 2;
  if (values.fsync !== "always" && values.fsync !== "everysec") throw new Error(`--fsync must be always or everysec\n${USAGE}`);
  if (values.stages !== "in-process" && values.stages !== "workerd") throw new Error(`--stages must be in-process or workerd\n${USAGE}`);
  if (values["host-start"] !== "bundle" && values["host-start"] !== "tsx") throw new Error(`--host-start must be bundle or tsx\n${USAGE}`);
  const kinds = values.kinds?.split(",").map((k) => k.trim()) as FaultKind[] | undefined;
  for (const k of kinds ?? []) if (!FAULT_KINDS.includes(k)) throw new Error(`unknown fault kind ${k}\n${USAGE}`);
  const binary = findServerBinary();
  const results: RunResult[] = [];
  const harnessErrors: number[] = [];
  let interrupted = false;
  process.once("SIGINT", () => {
    interrupted = true;
    console.log("\nSIGINT: finishing the current run, then the summary");
  });
  for (let r = 0; r < runs && !interrupted; r++) {
    const s = seed + r;
    console.log(`run ${r + 1}/${runs} (seed ${s})`);
    let result: RunResult;
    try {
      result = await runChaos({
      seed: s,
      hosts,
      fsync: values.fsync,
      articles: int("articles", values.articles!, 10, 100_000),
      users: int("users", values.users!, 1, 10_000),
      faults: int("faults", values.faults!, 0, 100),
      kinds,
      stages: values.stages,
      hostStart: values["host-start"],
      rate: int("rate", values.rate!, 1, 10_000),
      visibilityMs: int("visibility-ms", values["visibility-ms"]!, 1000, 120_000),
      binary,
      log: (l) => console.log(l),
      childLog: values.verbose ? (l) => console.log(l) : undefined,
      });
    } catch (err) {
      // The harness itself failed (a host that never started): the run counts as failed, the others go on.
      console.log(`  HARNESS ERROR: ${(err as Error).message.split("\n").slice(0, 3).join(" | ")}`);
      harnessErrors.push(s);
      continue;
    }
    results.push(result);
    if (values.out) appendFileSync(values.out, JSON.stringify(result) + "\n");
    const rep = result.report;
    console.log(
      `  => ${rep.runs} runs, ${rep.completed} completed, ${rep.feedEntries} feed entries: lost ${rep.lost}, duplicated ${rep.duplicated}, dead-lettered ${rep.deadLettered}, ` +
        `poison ${rep.poison.deadLetteredWithReason}/${rep.poison.injected} + malformed ${rep.poison.malformedDeadLettered}/${rep.poison.malformedInjected} dead-lettered with reason${rep.poison.malformedEverysecLost ? ` (${rep.poison.malformedEverysecLost} lost to the AOF cut)` : ""}, ` +
        `everysec lost ${rep.everysecLost}, max delay ${(rep.maxDelayMs / 1000).toFixed(1)} s, Ctrl-C ${result.ctrlCMs.map((m) => `${m === Infinity ? "HUNG" : (m / 1000).toFixed(1) + " s"}`).join(", ")}, ${(result.ms / 1000).toFixed(0)} s` +
        (rep.violations.length ? `\n  VIOLATIONS:\n    ${rep.violations.join("\n    ")}` : ""),
    );
  }
  const { table, failed } = summarize(results);
  console.log(`\n${table}`);
  if (harnessErrors.length > 0) console.log(`harness errors (runs not checked): seeds ${harnessErrors.join(", ")}`);
  return failed || harnessErrors.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof Error ? err.stack ?? err.message : err);
    process.exit(2);
  },
);
