/**
 * The embedded server's data dir (`VALKEY_DATA_DIR`, default `.data/valkey`):
 * what `npm run reset` / `npm start -- --reset` may delete, and the checks
 * that keep it from deleting anything else.
 */
import { existsSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { isAlive } from "./valkey-launcher";

/** What the launcher and the server write into a data dir; nothing else is ever deleted. */
export const DATA_DIR_ENTRIES = ["appendonlydir", "dump.rdb", "server.log", "server.pid", "launcher.json", "nodes.conf"] as const;

export interface ResetReport {
  dir: string;
  /** Entries deleted (names inside `dir`). */
  deleted: string[];
  /** Entries left alone because the launcher did not write them. */
  kept: string[];
}

/**
 * Deletes the embedded server's data (AOF, RDB, log, pidfiles) in `dataDir`.
 * Refuses when `VALKEY_URL` names another server (its data is not here) and
 * when a live server still uses the dir. Other files are kept and reported.
 */
export function resetDataDir(dataDir: string, { valkeyUrl }: { valkeyUrl?: string } = {}): ResetReport {
  if (valkeyUrl) {
    throw new Error(`VALKEY_URL is set (${valkeyUrl}): its data lives on that server, not in ${dataDir}; reset refuses. Unset VALKEY_URL to reset the embedded server's data, or clear that server yourself.`);
  }
  const dir = resolve(dataDir);
  if (!existsSync(dir)) return { dir, deleted: [], kept: [] };
  if (!statSync(dir).isDirectory()) throw new Error(`${dir} is not a directory`);
  const state = join(dir, "launcher.json");
  if (existsSync(state)) {
    let pid = 0;
    try {
      pid = Number((JSON.parse(readFileSync(state, "utf8")) as { serverPid?: number }).serverPid ?? 0);
    } catch {
      // unreadable pidfile: no server to protect
    }
    if (pid > 0 && isAlive(pid)) throw new Error(`a server (pid ${pid}) is running on ${dir}: stop npm start first (Ctrl-C), then reset`);
  }
  const known = new Set<string>(DATA_DIR_ENTRIES);
  const deleted: string[] = [];
  const kept: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (known.has(name)) {
      rmSync(join(dir, name), { recursive: true, force: true });
      deleted.push(name);
    } else kept.push(name);
  }
  if (kept.length === 0) rmdirSync(dir);
  return { dir, deleted, kept };
}

/** The embedded cluster's data dir (`VALKEY_CLUSTER` / `--cluster N`): next to the server's. */
export function clusterDataDir(dataDir: string): string {
  return `${dataDir}-cluster`;
}

/**
 * Deletes the embedded cluster's data: every `node-<i>` dir's server data
 * (as resetDataDir does for one server, refusing while any node runs) and the
 * layout file `cluster.json`, so the next start builds a new cluster on new
 * ports. Refuses for VALKEY_URL or VALKEY_CLUSTER_NODES (another cluster's
 * data lives there, not here). Other files are kept and reported.
 */
export function resetClusterDataDir(dir: string, { valkeyUrl, clusterNodes }: { valkeyUrl?: string; clusterNodes?: string } = {}): ResetReport {
  if (valkeyUrl || clusterNodes) {
    const what = clusterNodes ? `VALKEY_CLUSTER_NODES is set (${clusterNodes})` : `VALKEY_URL is set (${valkeyUrl})`;
    throw new Error(`${what}: its data lives on those servers, not in ${dir}; reset refuses. Unset it to reset the embedded cluster's data, or clear those servers yourself.`);
  }
  const root = resolve(dir);
  if (!existsSync(root)) return { dir: root, deleted: [], kept: [] };
  if (!statSync(root).isDirectory()) throw new Error(`${root} is not a directory`);
  const nodes = readdirSync(root).filter((name) => /^node-\d+$/.test(name) && statSync(join(root, name)).isDirectory()).sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)));
  // Every node is checked before anything is deleted: no half-reset cluster.
  for (const node of nodes) {
    const state = join(root, node, "launcher.json");
    if (!existsSync(state)) continue;
    let pid = 0;
    try {
      pid = Number((JSON.parse(readFileSync(state, "utf8")) as { serverPid?: number }).serverPid ?? 0);
    } catch {
      // unreadable pidfile: no server to protect
    }
    if (pid > 0 && isAlive(pid)) throw new Error(`a cluster node (pid ${pid}, ${node}) is running on ${root}: stop npm start first (Ctrl-C), then reset`);
  }
  const deleted: string[] = [];
  const kept: string[] = [];
  for (const node of nodes) {
    const report = resetDataDir(join(root, node));
    deleted.push(...report.deleted.map((name) => `${node}/${name}`));
    kept.push(...report.kept.map((name) => `${node}/${name}`));
  }
  for (const name of readdirSync(root).sort()) {
    if (name === "cluster.json") {
      rmSync(join(root, name), { force: true });
      deleted.push(name);
    } else if (!nodes.includes(name)) kept.push(name);
  }
  if (readdirSync(root).length === 0) rmdirSync(root);
  return { dir: root, deleted, kept };
}
