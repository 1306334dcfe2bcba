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
 * With VALKEY_URL it migrates that server; without, the embedded server's data
 * dir (VALKEY_DATA_DIR, as npm start opens it).
 * KEY_PREFIX, PARTITIONS and FEED_BUCKETS are read like the host reads them.
 * RENAMENX keeps streams' consumer groups and keys' TTLs; a key whose new name
 * already exists is left alone and reported.
 */
import { spreadTag } from "../../functions/keys";
import type { Connection } from "../valkey";

export interface TagMigration {
  renamed: number;
  /** Old names whose new name already existed (left as they are). */
  conflicts: string[];
}

/**
 * Renames every `<prefix>:{p<i>}:...` and `<prefix>:{b<i>}:...` key whose tag
 * changed. Refuses to run on a cluster (a rename across slots is CROSSSLOT there;
 * data moves onto a cluster with the new names already).
 */
export async function migrateLegacyTags(
  conn: Connection,
  { prefix, partitions, feedBuckets, dryRun = false, log = () => {} }: { prefix: string; partitions: number; feedBuckets: number; dryRun?: boolean; log?: (line: string) => void },
): Promise<TagMigration> {
  const info = String(await conn.info("cluster"));
  if (/^cluster_enabled:1/m.test(info)) throw new Error("migrate-tags runs on a single server only");
  const result: TagMigration = { renamed: 0, conflicts: [] };
  for (const [letter, n] of [["p", partitions], ["b", feedBuckets]] as const) {
    for (let i = 0; i < n; i++) {
      const from = `${prefix}:{${letter}${i}}:`;
      const to = `${prefix}:{${spreadTag(letter, i, n)}}:`;
      if (from === to) continue;
      let cursor = "0";
      do {
        const [next, found] = (await conn.scan(cursor, "MATCH", `${from}*`, "COUNT", 1000)) as [string, string[]];
        cursor = next;
        for (const key of found) {
          const target = to + key.slice(from.length);
          if (dryRun) {
            result.renamed++;
            continue;
          }
          if (Number(await conn.renamenx(key, target)) === 1) result.renamed++;
          else result.conflicts.push(key);
        }
      } while (cursor !== "0");
    }
  }
  log(`${dryRun ? "would rename" : "renamed"} ${result.renamed} key(s)${result.conflicts.length ? `; ${result.conflicts.length} left because the new name exists, e.g. ${result.conflicts[0]}` : ""}`);
  return result;
}

async function main(): Promise<void> {
  const { loadConfig } = await import("../config");
  const { connectValkey } = await import("../valkey");
  const { findServerBinary, launchValkey } = await import("../valkey-launcher");
  const config = loadConfig(process.env);
  // No VALKEY_URL: the embedded server's data dir, as npm start would open it.
  const embedded = config.VALKEY_URL
    ? undefined
    : await launchValkey({ dataDir: config.VALKEY_DATA_DIR, binary: findServerBinary(config.VALKEY_SERVER ? { ...process.env, VALKEY_SERVER: config.VALKEY_SERVER } : process.env), log: console.log });
  const conn = connectValkey(config.VALKEY_URL ?? embedded!.url, { name: "edgepipe-migrate-tags" });
  try {
    await migrateLegacyTags(conn, { prefix: config.KEY_PREFIX, partitions: config.PARTITIONS, feedBuckets: config.FEED_BUCKETS, dryRun: process.argv.includes("--dry-run"), log: console.log });
  } finally {
    await conn.quit();
    await embedded?.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    console.error((err as Error).message);
    process.exit(1);
  });
}
