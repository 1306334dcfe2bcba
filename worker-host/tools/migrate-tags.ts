/**
 * One-off migration of a single server's data from the hash tags the key
 * builder used before spread tags ({p<i>}, {b<i>}) to the current ones
 * (spreadTag in functions/keys.ts). Needed only with more than one partition
 * or feed bucket (the default 16 buckets included); with one of each the
 * names did not change. Run it with the app stopped, before starting the new
 * version on old data:
 *
 *   npx tsx worker-host/tools/migrate-tags.ts [--dry-run]
 *
 * It opens the store as npm start does: VALKEY_URL (a cluster node's URL is
 * detected), VALKEY_CLUSTER_NODES, the embedded cluster (VALKEY_CLUSTER), or
 * the embedded server's data dir (VALKEY_DATA_DIR).
 * KEY_PREFIX, PARTITIONS and FEED_BUCKETS are read like the host reads them
 * (12 and 24 on a cluster unless set).
 * On one server RENAMENX keeps streams' consumer groups and keys' TTLs. On a
 * cluster the old and new names are in different slots (often on different
 * masters), so each key is moved with DUMP + RESTORE (the same serialization:
 * consumer groups and pending entries included) with its remaining TTL, then
 * the old key is deleted. Either way a key whose new name already exists is
 * left alone and reported (on a cluster that is also what a rerun finds for a
 * key whose move was interrupted between RESTORE and DEL: check and delete the
 * old one yourself).
 */
import { spreadTag } from "../../functions/keys";
import { asCluster, isClusterConnection, type Connection } from "../valkey";

export interface TagMigration {
  renamed: number;
  /** Old names whose new name already existed (left as they are). */
  conflicts: string[];
}

/**
 * Renames every `<prefix>:{p<i>}:...` and `<prefix>:{b<i>}:...` key whose tag
 * changed: RENAMENX on one server; on a cluster (a rename across slots is
 * CROSSSLOT) DUMP + RESTORE at the new name's master, then DEL of the old key.
 */
export async function migrateLegacyTags(
  conn: Connection,
  { prefix, partitions, feedBuckets, dryRun = false, log = () => {} }: { prefix: string; partitions: number; feedBuckets: number; dryRun?: boolean; log?: (line: string) => void },
): Promise<TagMigration> {
  const cluster = isClusterConnection(conn) ? asCluster(conn) : undefined;
  if (!cluster && /^cluster_enabled:1/m.test(String(await conn.info("cluster")))) throw new Error("migrate-tags: this server is a cluster node; connect as a cluster (VALKEY_CLUSTER_NODES)");
  const result: TagMigration = { renamed: 0, conflicts: [] };
  // Where to look: the server, or every master (a tag's keys live on the master of its slot).
  const scanners = cluster ? cluster.nodes("master") : [conn];
  const move = async (key: string, target: string): Promise<boolean> => {
    if (!cluster) return Number(await conn.renamenx(key, target)) === 1;
    const [payload, pttl] = await Promise.all([conn.dumpBuffer(key), conn.pttl(key)]);
    if (payload === null || pttl === -2) return true; // gone meanwhile (expired)
    try {
      await conn.restore(target, pttl > 0 ? pttl : 0, payload);
    } catch (err) {
      if (/BUSYKEY/.test((err as Error).message)) return false;
      throw err;
    }
    await conn.del(key);
    return true;
  };
  for (const [letter, n] of [["p", partitions], ["b", feedBuckets]] as const) {
    for (let i = 0; i < n; i++) {
      const from = `${prefix}:{${letter}${i}}:`;
      const to = `${prefix}:{${spreadTag(letter, i, n)}}:`;
      if (from === to) continue;
      for (const scanner of scanners) {
        let cursor = "0";
        do {
          const [next, found] = (await scanner.scan(cursor, "MATCH", `${from}*`, "COUNT", 1000)) as [string, string[]];
          cursor = next;
          for (const key of found) {
            const target = to + key.slice(from.length);
            if (dryRun) {
              result.renamed++;
              continue;
            }
            if (await move(key, target)) result.renamed++;
            else result.conflicts.push(key);
          }
        } while (cursor !== "0");
      }
    }
  }
  log(`${dryRun ? "would rename" : "renamed"} ${result.renamed} key(s)${result.conflicts.length ? `; ${result.conflicts.length} left because the new name exists, e.g. ${result.conflicts[0]}` : ""}`);
  return result;
}

async function main(): Promise<void> {
  const { loadConfig } = await import("../config");
  const { openStore } = await import("../runtime");
  const { closeConnection } = await import("../valkey");
  const config = loadConfig(process.env);
  // The store as npm start opens it: VALKEY_URL, VALKEY_CLUSTER_NODES, the embedded cluster or server.
  const store = await openStore(config, console.log);
  try {
    await migrateLegacyTags(store.conn, { prefix: config.KEY_PREFIX, partitions: store.partitions, feedBuckets: store.feedBuckets, dryRun: process.argv.includes("--dry-run"), log: console.log });
  } finally {
    await closeConnection(store.conn, 2000);
    await store.stopEmbedded();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    console.error((err as Error).message);
    process.exit(1);
  });
}
