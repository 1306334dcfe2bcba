/**
 * Measures the news pipeline on an embedded server (npm run measure:news):
 *
 * 1. Replays ALL AG News items (../shared/data/ag_news_test.csv, 7,600) over
 *    HTTP into the real runtime with 1,000 demo users; prints articles/s from
 *    the first POST until every run finished; then verifies every user's feed
 *    (exactly the followed topics' articles up to the cap, no duplicates,
 *    nothing missing), replays the same file again and checks nothing was
 *    added (dedupe), and checks /v1/stats against what was ingested.
 * 2. Fan-out throughput: deliveries/s with 1,000 and 10,000 subscribers of
 *    one topic, and bytes per buffered feed entry (used_memory delta / entries).
 *
 * Options: --file PATH  --users N (1000)  --feed-cap N (500)  --limit N  --skip-fanout  --skip-replay
 */
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { readFanoutDeliveries } from "../../../functions/stats";
import { app, pipeline } from "../../../functions/news/index";
import { settingsFor } from "../../../functions/config";
import { createKeys } from "../../../functions/keys";
import { randomHex } from "../../../functions/envelope";
import { fanOutArticle } from "../../../functions/news/fan-out";
import { seedDemoUsers, setInterests } from "../../../functions/news/users";
import { loadConfig } from "../../config";
import { checkFeeds, deliveredArticles, waitForRuns } from "../news-check";
import { progressBar } from "../../progress";
import { readArticlesFile, replay } from "../replay";
import { startRuntime } from "../../runtime";
import { connectValkey, upstashOverValkey, type Connection } from "../../valkey";
import { launchValkey } from "../../valkey-launcher";
import { NewsSettings } from "../../../functions/news/config";

const { values } = parseArgs({
  options: {
    file: { type: "string", default: fileURLToPath(new URL("../../../../shared/data/ag_news_test.csv", import.meta.url)) },
    users: { type: "string", default: "1000" },
    "feed-cap": { type: "string", default: "500" },
    limit: { type: "string" },
    "skip-fanout": { type: "boolean", default: false },
    "skip-replay": { type: "boolean", default: false },
  },
});
const USERS = Number(values.users);
const FEED_CAP = Number(values["feed-cap"]);

async function usedMemory(conn: Connection): Promise<number> {
  const info = await conn.info("memory");
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1]);
}

async function serverCpuSeconds(conn: Connection): Promise<number> {
  const info = await conn.info("cpu");
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(info)?.[1] ?? 0);
  return field("used_cpu_user") + field("used_cpu_sys");
}

async function measureReplay(valkeyUrl: string): Promise<boolean> {
  if (!existsSync(values.file!)) {
    console.log(`SKIP replay: ${values.file} not found (pass --file PATH to an AG News style CSV)`);
    return true;
  }
  const { articles: all, invalid } = readArticlesFile(values.file!, { source: "ag_news" });
  const articles = values.limit ? all.slice(0, Number(values.limit)) : all;
  // Worker tuning (BATCH_SIZE, CONCURRENCY, ...) comes from the environment like for npm start.
  const config = loadConfig({ BLOCK_MS: "100", ...process.env, VALKEY_URL: valkeyUrl, PORT: "0", DEMO: "off", KEY_PREFIX: `m${randomHex(3)}`, FEED_CAP: String(FEED_CAP) }, { appSettings: NewsSettings });
  const rt = await startRuntime({ config, pipeline, app, log: (l) => console.error(l) });
  let ok = true;
  try {
    const { keys } = settingsFor(rt.env);
    const users = await seedDemoUsers(rt.env.REDIS!, keys, USERS);
    console.log(`\n== replay: ${articles.length} items of ${values.file}${invalid ? ` (${invalid} invalid rows dropped)` : ""}, ${users.length} demo users, feed cap ${FEED_CAP}`);
    const cpuBefore = await serverCpuSeconds(rt.conn);
    const started = performance.now();
    const sent = await replay({ articles, url: rt.url, progress: true });
    const bar = progressBar(sent.runIds.length, { label: "runs done", unit: "runs" });
    const statuses = await waitForRuns(rt.conn, keys, sent.runIds, { onProgress: (d) => bar.update(d) });
    bar.finish();
    const seconds = (performance.now() - started) / 1000;
    const completed = statuses.filter((s) => s === "completed").length;
    const skipped = statuses.filter((s) => s === "skipped").length;
    const other = statuses.length - completed - skipped;
    console.log(`ingest (HTTP, 500/call): ${sent.articlesPerSecond.toFixed(0)} articles/s`);
    console.log(`end to end: ${articles.length} articles in ${seconds.toFixed(1)} s = ${(articles.length / seconds).toFixed(0)} articles/s (first POST -> last run finished)`);
    console.log(`server CPU during the replay: ${((await serverCpuSeconds(rt.conn)) - cpuBefore).toFixed(1)} s (user+sys) of ${seconds.toFixed(1)} s wall`);
    console.log(`runs: ${completed} completed, ${skipped} skipped as duplicates, ${other} other`);

    const delivered = await deliveredArticles(rt.conn, keys, sent.runIds);
    const check = await checkFeeds(rt.conn, keys, users, delivered, { feedCap: FEED_CAP });
    console.log(`feeds: ${check.users} users, ${check.exact} exact, ${check.capped} full at cap (all entries expected), ${check.duplicates} duplicates, ${check.unexpected} unexpected, ${check.missing} missing; ${check.feedEntries} entries buffered, ${check.expectedDeliveries} deliveries expected before cap`);
    for (const p of check.problems) console.log(`  PROBLEM ${p}`);
    const feedsOk = check.problems.length === 0 && other === 0;
    ok &&= feedsOk;

    const stats = (await (await fetch(`${rt.url}/v1/stats`)).json()) as { stages: Array<{ name: string; ingested: number; processed: number; latencyMs: { p50: number | null; p99: number | null } }>; fanout: { deliveries: number } };
    const fetcher = stats.stages.find((s) => s.name === "fetcher")!;
    const fanout = stats.stages.find((s) => s.name === "fanout")!;
    for (const st of stats.stages) {
      console.log(`  stage ${st.name.padEnd(10)} processed ${String(st.processed).padStart(5)}  handler p50 ${st.latencyMs.p50} ms  p99 ${st.latencyMs.p99} ms (per envelope, batch of up to BATCH_SIZE in parallel)`);
    }
    const statsOk = fetcher.ingested === articles.length && fetcher.processed === articles.length && fanout.processed === completed && stats.fanout.deliveries === check.expectedDeliveries;
    console.log(`stats: fetcher ingested ${fetcher.ingested}/processed ${fetcher.processed}, fanout processed ${fanout.processed}, deliveries ${stats.fanout.deliveries} (expected ${check.expectedDeliveries}) -> ${statsOk ? "match" : "MISMATCH"}`);
    ok &&= statsOk;

    // The same replay again: every run must be skipped and no feed may change.
    const snapshot = async () => (await Promise.all(users.map((u) => rt.conn.lrange(keys.feed(u.uid), 0, -1)))).map((f) => f.join(",")).join("|");
    const before = await snapshot();
    const again = await replay({ articles, url: rt.url, progress: false });
    const second = await waitForRuns(rt.conn, keys, again.runIds);
    const after = await snapshot();
    const deliveriesAfter = await readFanoutDeliveries(rt.env.REDIS!, keys);
    const dedupeOk = second.every((s) => s === "skipped") && before === after && deliveriesAfter === stats.fanout.deliveries;
    console.log(`replay again: ${second.filter((s) => s === "skipped").length}/${second.length} skipped, feeds ${before === after ? "unchanged" : "CHANGED"}, deliveries ${deliveriesAfter} -> ${dedupeOk ? "nothing added" : "SOMETHING ADDED"}`);
    ok &&= dedupeOk;
    console.log(`RESULT replay: ${ok ? "PASS" : "FAIL"}`);
  } finally {
    await rt.close();
  }
  return ok;
}

async function measureFanout(conn: Connection, subscribers: number, articles: number): Promise<void> {
  const keys = createKeys({ prefix: `f${randomHex(3)}`, feedBuckets: 16 });
  const redis = upstashOverValkey(conn);
  for (let i = 0; i < subscribers; i += 500) {
    await Promise.all(Array.from({ length: Math.min(500, subscribers - i) }, (_, j) => setInterests(redis, keys, `s${String(i + j).padStart(6, "0")}`, ["science"])));
  }
  const memBefore = await usedMemory(conn);
  const bar = progressBar(articles, { label: `fan-out ${subscribers}`, unit: "articles" });
  const started = performance.now();
  let delivered = 0;
  // A few articles in flight at once, as several fanout handlers would be.
  for (let i = 0; i < articles; i += 4) {
    const batch = Array.from({ length: Math.min(4, articles - i) }, (_, j) => (1_000_000 + i + j).toString(36));
    const results = await Promise.all(batch.map((id) => fanOutArticle(redis, keys, id, "science", { feedCap: 500, markerTtlSeconds: 3600 })));
    delivered += results.reduce((s, r) => s + r.delivered, 0);
    bar.update(i + batch.length);
  }
  const seconds = (performance.now() - started) / 1000;
  bar.finish();
  const memAfter = await usedMemory(conn);
  const entries = subscribers * Math.min(articles, 500);
  if (delivered !== subscribers * articles) throw new Error(`expected ${subscribers * articles} deliveries, got ${delivered}`);
  console.log(`fan-out ${subscribers} subscribers of one topic: ${articles} articles, ${delivered} deliveries in ${seconds.toFixed(2)} s = ${Math.round(delivered / seconds)} deliveries/s`);
  console.log(`memory: used_memory +${memAfter - memBefore} bytes for ${entries} buffered feed entries = ${((memAfter - memBefore) / entries).toFixed(1)} bytes/entry (incl. ${articles * 16} per-(article,bucket) markers)`);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "edgepipe-measure-"));
  const server = await launchValkey({ dataDir: dir });
  console.log(`embedded ${server.url} (AOF on, like npm start), data dir ${dir}`);
  let ok = true;
  try {
    if (!values["skip-replay"]) ok = await measureReplay(server.url);
    if (!values["skip-fanout"]) {
      const conn = connectValkey(server.url, { name: "edgepipe-measure" });
      console.log("\n== fan-out");
      await measureFanout(conn, 1000, 300);
      await measureFanout(conn, 10_000, 100);
      await conn.quit();
    }
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  process.exitCode = ok ? 0 : 1;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
