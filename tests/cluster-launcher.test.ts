/**
 * The local cluster launcher: N masters (and replicas) joined into a cluster
 * that answers cluster_state:ok on every node, data and layout kept across a
 * restart in the same data dir, a failover when a master is killed, and no
 * orphans after a kill -9 of the parent (watchdogs, or the pidfiles on the
 * next start).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Cluster } from "iovalkey";
import { afterAll, describe, expect, it } from "vitest";
import { CLUSTER_SLOTS } from "../functions/key-slot";
import { defaultSlotRange, launchCluster } from "../worker-host/cluster-launcher";
import { resetClusterDataDir } from "../worker-host/data-dir";
import { isAlive, ping } from "../worker-host/valkey-launcher";
import { startFixture } from "./helpers/fixture";
import { eventually } from "./helpers/valkey";
import { nodeArgs } from "./helpers/node-entry";

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "edgepipe-cluster-launcher-"));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** Launches a cluster from a child process (the fixture) and returns its node pids and ports. */
const launchInChild = (dir: string, watch: boolean, masters = 2) =>
  startFixture<{ pids: number[]; ports: number[] }>("launch-cluster-and-wait.ts", [dir, watch ? "watch" : "no-watch", String(masters)]);

// The cases are independent and mostly wait on servers, so they run side by side.
describe.concurrent("cluster launcher", () => {
  it("splits the slots like valkey-cli --cluster create", () => {
    expect([0, 1, 2].map((i) => defaultSlotRange(i, 3))).toEqual([[0, 5460], [5461, 10922], [10923, 16383]]);
    for (const n of [1, 2, 5, 7, 32]) {
      const ranges = Array.from({ length: n }, (_, i) => defaultSlotRange(i, n));
      expect(ranges[0][0]).toBe(0);
      expect(ranges[n - 1][1]).toBe(CLUSTER_SLOTS - 1);
      for (let i = 1; i < n; i++) expect(ranges[i][0]).toBe(ranges[i - 1][1] + 1);
    }
  });

  it("npm run reset -- --cluster 3 deletes the embedded cluster's data (refused while a node runs, or for VALKEY_CLUSTER_NODES); the next start is a new cluster", async () => {
    const base = join(tempDir(), "valkey");
    const dir = `${base}-cluster`;
    const first = await launchCluster({ dataDir: dir, masters: 3, appendOnly: true });
    const client = new Cluster(first.startupNodes);
    await Promise.all(Array.from({ length: 20 }, (_, i) => client.set(`r${i}`, "x")));
    await client.quit();
    expect(() => resetClusterDataDir(dir)).toThrow(/a cluster node \(pid \d+, node-\d\) is running/);
    expect(() => resetClusterDataDir(dir, { clusterNodes: first.seedList })).toThrow(/VALKEY_CLUSTER_NODES is set/);
    await first.stop();
    writeFileSync(join(dir, "notes.txt"), "mine");
    const reset = spawnSync(process.execPath, nodeArgs("worker-host/cli.ts", ["reset", "--cluster", "3"]), { env: { ...process.env, VALKEY_URL: "", VALKEY_CLUSTER_NODES: "", VALKEY_DATA_DIR: base }, encoding: "utf8" });
    expect(reset.status, reset.stdout + reset.stderr).toBe(0);
    expect(reset.stdout).toMatch(/reset: deleted node-0\/appendonlydir, .*node-2\/nodes\.conf.*, cluster\.json in .*valkey-cluster \(.*everything the embedded cluster stored\)/);
    expect(reset.stdout).toContain("reset: kept notes.txt");
    expect(readdirSync(dir)).toEqual(["notes.txt"]);
    // A new cluster: no key of the old one.
    const second = await launchCluster({ dataDir: dir, masters: 3, appendOnly: true });
    const again = new Cluster(second.startupNodes);
    expect(await again.exists("r0")).toBe(0);
    await again.quit();
    await second.stop();
    // Without --cluster, reset touches the server's dir only and says where the cluster's data is.
    mkdirSync(base, { recursive: true });
    const plain = spawnSync(process.execPath, nodeArgs("worker-host/cli.ts", ["reset"]), { env: { ...process.env, VALKEY_URL: "", VALKEY_CLUSTER: "", VALKEY_DATA_DIR: base }, encoding: "utf8" });
    expect(plain.status, plain.stderr).toBe(0);
    expect(plain.stdout).toContain(`${dir} holds an embedded cluster's data, kept; npm run reset -- --cluster 3 deletes it`);
    expect(existsSync(join(dir, "cluster.json"))).toBe(true);
  });

  it("starts 3 masters that serve every slot, keeps data and ports across a restart in the same dir", async () => {
    const dir = tempDir();
    const first = await launchCluster({ dataDir: dir, masters: 3, appendOnly: true });
    expect(first.masters.map((m) => m.slots)).toEqual([[0, 5460], [5461, 10922], [10923, 16383]]);
    expect(first.nodes.every((n) => n.port !== 6379 && n.busPort !== n.port + 10000 && n.busPort !== 6379)).toBe(true);
    const topology = await first.topology();
    expect(topology.filter((t) => t.role === "master").map((t) => t.slots).sort((a, b) => a[0][0] - b[0][0])).toEqual([[[0, 5460]], [[5461, 10922]], [[10923, 16383]]]);
    const client = new Cluster(first.startupNodes);
    // Keys on every master.
    const keys = Array.from({ length: 30 }, (_, i) => `k${i}`);
    await Promise.all(keys.map((k) => client.set(k, k.toUpperCase())));
    const perNode = await Promise.all(client.nodes("master").map((n) => n.dbsize()));
    expect(perNode.every((n) => n > 0)).toBe(true);
    await client.quit();
    await first.stop();
    expect(first.nodes.every((n) => n.pid === undefined || !isAlive(n.pid))).toBe(true);

    const second = await launchCluster({ dataDir: dir, masters: 3, appendOnly: true });
    expect(second.nodes.map((n) => [n.port, n.busPort, n.id])).toEqual(first.nodes.map((n) => [n.port, n.busPort, n.id]));
    const again = new Cluster(second.startupNodes);
    expect(await Promise.all(keys.map((k) => again.get(k)))).toEqual(keys.map((k) => k.toUpperCase()));
    await again.quit();
    await second.stop();
    await expect(launchCluster({ dataDir: dir, masters: 2 })).rejects.toThrow(/holds a cluster of 3 master\(s\) with 0 replica\(s\) each, not 2 with 0/);
  });

  it("with one replica per master: a killed master's replica takes over its slots, and the old master rejoins as a replica", async () => {
    const dir = tempDir();
    // Three masters: a failover needs a majority of masters to agree that one failed.
    const cluster = await launchCluster({ dataDir: dir, masters: 3, replicas: 1, appendOnly: false, nodeTimeoutMs: 1000 });
    try {
      expect(cluster.nodes.map((n) => n.role)).toEqual(["master", "master", "master", "replica", "replica", "replica"]);
      expect(cluster.nodes.slice(3).map((n) => n.replicaOf)).toEqual([0, 1, 2]);
      const before = await cluster.topology();
      expect(before.find((t) => t.index === 3)).toMatchObject({ role: "replica", masterId: cluster.nodes[0].id });

      await cluster.kill(0);
      await cluster.waitUntilOk(20_000);
      const after = await cluster.topology();
      expect(after.find((t) => t.index === 3)).toMatchObject({ role: "master", slots: [[0, 5460]] });
      expect(after.find((t) => t.index === 0)?.flags).toContain("fail");

      await cluster.restart(0);
      await eventually(async () => (await cluster.topology()).find((t) => t.index === 0 && t.role === "replica" && t.masterId === cluster.nodes[3].id && t.flags.length === 0), { timeoutMs: 20_000, stepMs: 100 });
      await cluster.waitUntilOk(20_000);
    } finally {
      await cluster.stop();
    }
  });

  it("stops every node by itself when its parent is killed with -9 (watchdogs)", async () => {
    const dir = tempDir();
    const { child, info } = await launchInChild(dir, true);
    expect(info.pids.every(isAlive)).toBe(true);
    child.kill("SIGKILL");
    await eventually(() => info.pids.every((pid) => !isAlive(pid)), { timeoutMs: 10_000, stepMs: 100 });
  });

  it("stops nodes orphaned by a kill -9 of their parent on the next start in the same dir, and brings the same cluster back", async () => {
    const dir = tempDir();
    const { child, info } = await launchInChild(dir, false);
    child.kill("SIGKILL");
    await eventually(() => child.exitCode !== null || child.signalCode !== null);
    expect(info.pids.every(isAlive)).toBe(true);
    expect((await Promise.all(info.ports.map((p) => ping(p)))).every(Boolean)).toBe(true);
    const next = await launchCluster({ dataDir: dir, masters: 2, appendOnly: false });
    expect(info.pids.every((pid) => !isAlive(pid))).toBe(true);
    expect(next.nodes.map((n) => n.port)).toEqual(info.ports);
    await next.stop();
  });
});
