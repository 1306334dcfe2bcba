/**
 * The long news replay on one server and on a local 3-master cluster
 * (npm run measure:cluster): the same AG News articles and demo users through
 * the real runtime on each, then every article's outcome, every user's feed
 * and GET /v1/topics compared, and the load per master of the cluster
 * (commands processed during the replay, from INFO commandstats, and keys)
 * against the ±25% bound.
 *
 * Options: --file PATH (../shared/data/ag_news_test.csv)  --limit N (4000)  --users N (300)  --masters N (3)
 *          --edge: the cluster run goes through the edge stack (npm run dev's: handlers and API in
 *          workerd from the built bundle, @upstash/redis over the REST bridge on the cluster)
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { articlesFromCsv } from "../../../functions/news/csv";
import { launchCluster } from "../../cluster-launcher";
import { launchValkey } from "../../valkey-launcher";
import { buildWorkerBundle } from "../../worker-bundle";
import { differences, loadPerMaster, replayOn, spreadFromMean } from "../cluster-compare";

const { values } = parseArgs({
  options: {
    file: { type: "string", default: fileURLToPath(new URL("../../../../shared/data/ag_news_test.csv", import.meta.url)) },
    limit: { type: "string", default: "4000" },
    users: { type: "string", default: "300" },
    masters: { type: "string", default: "3" },
    edge: { type: "boolean", default: false },
  },
});

async function main(): Promise<number> {
  if (!existsSync(values.file)) throw new Error(`${values.file} not found (--file PATH)`);
  const articles = articlesFromCsv(readFileSync(values.file, "utf8"))
    .slice(0, Number(values.limit))
    .map((r) => ({ title: r.title, body: r.body, source: "ag_news" }));
  const users = Number(values.users);
  const dir = mkdtempSync(join(tmpdir(), "edgepipe-measure-cluster-"));
  const server = await launchValkey({ dataDir: join(dir, "single") });
  const cluster = await launchCluster({ masters: Number(values.masters), dataDir: join(dir, "cluster") });
  try {
    console.log(`${articles.length} AG News articles, ${users} users; one ${server.binary.flavor} ${server.binary.version} server vs ${cluster.masters.length} masters`);
    const one = await replayOn({ VALKEY_URL: server.url }, articles, users);
    await one.runtime.close();
    console.log(`one server: ${one.seconds.toFixed(1)} s (${(articles.length / one.seconds).toFixed(0)} articles/s)`);
    const edge = values.edge ? { scriptPath: (await buildWorkerBundle({ outdir: join(dir, "worker") })).scriptPath } : undefined;
    const many = await replayOn({ VALKEY_CLUSTER_NODES: cluster.seedList }, articles, users, { edge });
    console.log(`cluster${edge ? " (edge stack: workerd over the REST bridge)" : ""}: ${many.seconds.toFixed(1)} s (${(articles.length / many.seconds).toFixed(0)} articles/s)`);
    // Commands since the cluster started (it served only this run: seeding users and the replay), keys now.
    const load = await loadPerMaster(many.runtime.conn, new Map());
    await many.runtime.close();
    const diff = differences(one, many);
    const count = (r: typeof one, s: string) => r.outcomes.filter((o) => o.startsWith(s)).length;
    const feedEntries = Object.values(many.feeds).reduce((n, f) => n + f.length, 0);
    console.log(`outcomes: ${count(many, "completed")} completed, ${count(many, "skipped")} skipped, ${many.outcomes.length - count(many, "completed") - count(many, "skipped")} other; ${feedEntries} feed entries over ${users} users; topics ${many.topics.map((t) => `${t.name} ${t.articles}`).join(", ")}`);
    console.log(diff.length === 0 ? "identical: every outcome, every feed, the topics" : `DIFFERENT:\n  ${diff.join("\n  ")}`);
    const cSpread = spreadFromMean(load.map((m) => m.commands));
    const kSpread = spreadFromMean(load.map((m) => m.keys));
    for (const m of load) console.log(`  master ${m.node}: ${m.commands} commands, ${m.keys} keys`);
    console.log(`load per master, largest distance from the mean: commands ${(cSpread * 100).toFixed(1)}%, keys ${(kSpread * 100).toFixed(1)}% (bound 25%: ${cSpread <= 0.25 && kSpread <= 0.25 ? "within" : "OUTSIDE"})`);
    return diff.length === 0 ? 0 : 1;
  } finally {
    await cluster.stop();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof Error ? err.stack : err);
    process.exit(1);
  },
);
