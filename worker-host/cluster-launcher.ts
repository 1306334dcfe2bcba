/**
 * Local cluster launcher: N masters (optionally R replicas each) of the same
 * server binary as the embedded launcher, each one an embedded server of its
 * own (launchValkey: data dir, pidfile, kill -9 watchdog), joined into a
 * cluster with CLUSTER ADDSLOTSRANGE + MEET (+ REPLICATE), and ready once every
 * node reports `cluster_state:ok`.
 *
 * Each node gets two free loopback ports: the client port and an explicit
 * cluster bus port (`cluster-port`), because the default bus port, port +
 * 10000, is often taken or past 65535 for the high ports the OS hands out.
 *
 * The layout (ports, shape) is kept in `<dataDir>/cluster.json`, so a second
 * launch in the same data dir restarts the same cluster on the same ports with
 * its data (AOF) instead of building a new one.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import Valkey from "iovalkey";
import { CLUSTER_SLOTS } from "../functions/key-slot";
import { findServerBinary, freePort, launchValkey, waitFor, type RunningValkey, type ServerBinary } from "./valkey-launcher";

export interface ClusterLaunchOptions {
  /** Parent data dir; node i lives in `<dataDir>/node-<i>`. Default `.data/valkey-cluster`. */
  dataDir?: string;
  /** Number of masters (1..32). Default 3. */
  masters?: number;
  /** Replicas per master (0..2). Default 0. */
  replicas?: number;
  /** AOF persistence (default true; tests turn it off). */
  appendOnly?: boolean;
  binary?: ServerBinary;
  /** `cluster-node-timeout`: how long a silent master is up before failover starts. Default 5000 ms. */
  nodeTimeoutMs?: number;
  /** Bound on the wait for `cluster_state:ok` on every node. Default 30000 ms. */
  readyTimeoutMs?: number;
  /** Extra server arguments for every node. */
  extraArgs?: string[];
  /** Each node's kill -9 watchdog (see launchValkey). Default true. */
  watchParent?: boolean;
  log?: (line: string) => void;
}

/** One node as launched. `role` is the role it was given; after a failover ask `topology()`. */
export interface ClusterNode {
  index: number;
  role: "master" | "replica";
  host: string;
  port: number;
  /** Cluster bus port (node-to-node gossip). */
  busPort: number;
  /** Node id (CLUSTER MYID). */
  id: string;
  /** Masters: the slot range given at creation, [first, last]. */
  slots?: [number, number];
  /** Replicas: the index of the master they were attached to. */
  replicaOf?: number;
  dataDir: string;
  /** Server pid, or undefined while the node is stopped. */
  pid: number | undefined;
}

/** A node as the cluster sees it now (CLUSTER NODES of a live node). */
export interface TopologyEntry {
  index: number;
  id: string;
  role: "master" | "replica";
  /** Node id of its master (replicas). */
  masterId?: string;
  /** Slot ranges served (masters). */
  slots: Array<[number, number]>;
  /** Flags such as "fail", "fail?", "handshake" (empty when healthy). */
  flags: string[];
}

export interface RunningCluster {
  nodes: ClusterNode[];
  /** The nodes launched as masters, in slot order. */
  masters: ClusterNode[];
  /** Seed list `127.0.0.1:p0,127.0.0.1:p1,...` (masters), for VALKEY_CLUSTER_NODES. */
  seedList: string;
  /** Seed nodes in the shape iovalkey's Cluster takes. */
  startupNodes: Array<{ host: string; port: number }>;
  binary: ServerBinary;
  dataDir: string;
  /** Reads the current topology from the first live node. */
  topology(): Promise<TopologyEntry[]>;
  /** Waits (bounded) until every running node reports cluster_state:ok. */
  waitUntilOk(timeoutMs?: number): Promise<void>;
  /** kill -9 one node (fault tests); it stays down until restart(). */
  kill(index: number): Promise<void>;
  /** SIGTERM one node (it saves its nodes.conf and AOF); it stays down until restart(). */
  stopNode(index: number): Promise<void>;
  /** Starts a stopped or killed node again, on its port, with its data dir. */
  restart(index: number): Promise<void>;
  /** Stops every node (SIGTERM, then SIGKILL after 10 s). */
  stop(): Promise<void>;
}

/** What cluster.json records: enough to start the same cluster again. */
interface ClusterLayout {
  masters: number;
  replicas: number;
  nodes: Array<{ port: number; busPort: number }>;
}

const HOST = "127.0.0.1";

/**
 * Seed nodes of the embedded cluster kept in `dataDir` (from its cluster.json),
 * for tools that reach a running `--cluster N` app (replay --direct); throws
 * when the dir holds no cluster.
 */
export function embeddedClusterSeeds(dataDir: string): Array<{ host: string; port: number }> {
  const layoutFile = join(resolve(dataDir), "cluster.json");
  if (!existsSync(layoutFile)) throw new Error(`${resolve(dataDir)} holds no embedded cluster (no cluster.json): start it with npm start -- --cluster N, or set VALKEY_CLUSTER_NODES`);
  const layout = JSON.parse(readFileSync(layoutFile, "utf8")) as ClusterLayout;
  return layout.nodes.map(({ port }) => ({ host: HOST, port }));
}

/**
 * The slot range of master `i` of `n`: the same equal split as
 * `valkey-cli --cluster create` (0-5460, 5461-10922, 10923-16383 for 3).
 */
export function defaultSlotRange(i: number, n: number): [number, number] {
  const per = CLUSTER_SLOTS / n;
  const first = i === 0 ? 0 : Math.round(i * per - 1) + 1;
  const last = i === n - 1 ? CLUSTER_SLOTS - 1 : Math.round((i + 1) * per - 1);
  return [first, last];
}

/** A client for the setup commands: no reconnects, no queueing forever. */
function adminClient(port: number): Valkey {
  const client = new Valkey({ host: HOST, port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 1, connectionName: "edgepipe-cluster-launcher" });
  client.on("error", () => {});
  return client;
}

async function withAdmin<T>(port: number, fn: (c: Valkey) => Promise<T>): Promise<T> {
  const client = adminClient(port);
  try {
    await client.connect();
    return await fn(client);
  } finally {
    client.disconnect();
  }
}

function infoField(info: string, field: string): string | undefined {
  const m = new RegExp(`^${field}:(.*)$`, "m").exec(info);
  return m?.[1].trim();
}

/** Parses CLUSTER NODES: id, addr, flags, master id, slot ranges. */
function parseClusterNodes(text: string): Array<{ id: string; port: number; flags: string[]; masterId?: string; slots: Array<[number, number]> }> {
  return text
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [id, addr, flags, master, , , , , ...slots] = line.trim().split(" ");
      const port = Number(/:(\d+)/.exec(addr)?.[1]);
      const ranges: Array<[number, number]> = [];
      for (const s of slots) {
        if (s.startsWith("[")) continue; // a slot being migrated/imported
        const [a, b] = s.split("-").map(Number);
        ranges.push([a, b ?? a]);
      }
      return { id, port, flags: flags.split(","), masterId: master === "-" ? undefined : master, slots: ranges };
    });
}

/** Two distinct free ports not in `taken` (client port, bus port). */
async function freePortPair(taken: Set<number>): Promise<[number, number]> {
  const pick = async () => {
    for (let i = 0; i < 20; i++) {
      const p = await freePort();
      if (!taken.has(p)) {
        taken.add(p);
        return p;
      }
    }
    throw new Error("no free loopback port found");
  };
  return [await pick(), await pick()];
}

/**
 * Starts a local cluster and resolves once every node reports cluster_state:ok.
 * @example
 * const cluster = await launchCluster({ masters: 3, dataDir: ".data/cluster" });
 * const client = new Cluster(cluster.startupNodes);
 * await cluster.stop();
 */
export async function launchCluster({
  dataDir = ".data/valkey-cluster",
  masters = 3,
  replicas = 0,
  appendOnly = true,
  binary,
  nodeTimeoutMs = 5000,
  readyTimeoutMs = 30_000,
  extraArgs = [],
  watchParent = true,
  log = () => {},
}: ClusterLaunchOptions = {}): Promise<RunningCluster> {
  if (!Number.isInteger(masters) || masters < 1 || masters > 32) throw new Error(`masters must be an integer 1..32, got ${masters}`);
  if (!Number.isInteger(replicas) || replicas < 0 || replicas > 2) throw new Error(`replicas must be an integer 0..2, got ${replicas}`);
  const bin = binary ?? findServerBinary();
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true });
  const total = masters * (1 + replicas);
  const layoutFile = join(dir, "cluster.json");
  const nodeDir = (i: number) => join(dir, `node-${i}`);

  let layout: ClusterLayout | undefined;
  if (existsSync(layoutFile)) {
    const saved = JSON.parse(readFileSync(layoutFile, "utf8")) as ClusterLayout;
    if (saved.masters !== masters || saved.replicas !== replicas) {
      throw new Error(
        `${dir} holds a cluster of ${saved.masters} master(s) with ${saved.replicas} replica(s) each, not ${masters} with ${replicas}; ` +
          "use another data dir or remove this one",
      );
    }
    if (saved.nodes.every((_, i) => existsSync(join(nodeDir(i), "nodes.conf")))) layout = saved;
  }
  const restarting = layout !== undefined;
  if (!restarting) {
    // A half-built cluster (no layout, or a node without nodes.conf) is rebuilt from scratch.
    for (let i = 0; i < total; i++) rmSync(nodeDir(i), { recursive: true, force: true });
  }

  const servers: Array<RunningValkey | undefined> = new Array(total).fill(undefined);
  const ports: Array<{ port: number; busPort: number }> = layout ? layout.nodes : [];
  const taken = new Set<number>();
  const nodeArgs = (busPort: number) => [
    "--cluster-enabled", "yes",
    "--cluster-config-file", "nodes.conf",
    "--cluster-port", String(busPort),
    "--cluster-node-timeout", String(nodeTimeoutMs),
    // A replica's first full sync starts at once, not after the default 5 s wait for more replicas.
    "--repl-diskless-sync-delay", "0",
    // CLUSTER SLOTS lists a replica only once its replication offset is not 0; on an idle
    // master the offset first moves with the master's replication PING (every 10 s by default).
    "--repl-ping-replica-period", "1",
    ...extraArgs,
  ];

  const startNode = async (i: number): Promise<RunningValkey> => {
    const launch = (port: number, busPort: number) =>
      launchValkey({ dataDir: nodeDir(i), port, appendOnly, binary: bin, extraArgs: nodeArgs(busPort), watchParent, log });
    if (ports[i]) return launch(ports[i].port, ports[i].busPort);
    // Fresh node: a port picked as free may be taken by the time the server binds it; try new ones.
    let lastError: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      const [port, busPort] = await freePortPair(taken);
      try {
        const server = await launch(port, busPort);
        ports[i] = { port, busPort };
        return server;
      } catch (err) {
        lastError = err;
      }
    }
    throw lastError;
  };

  const stopAll = async () => {
    await Promise.allSettled(servers.map((s) => s?.stop()));
  };

  try {
    await Promise.all(Array.from({ length: total }, async (_, i) => (servers[i] = await startNode(i))));
    if (!restarting) writeFileSync(layoutFile, JSON.stringify({ masters, replicas, nodes: ports } satisfies ClusterLayout));
    const ids = await Promise.all(ports.map(({ port }) => withAdmin(port, async (c) => String(await c.call("CLUSTER", "MYID")))));

    if (!restarting) {
      log(`joining ${masters} master(s) and ${masters * replicas} replica(s) on ports ${ports.map((p) => p.port).join(", ")}`);
      // Distinct config epochs first (only allowed before a node meets others), so
      // no epoch-collision round is needed; then slots, then MEET from node 0.
      await Promise.all(
        ports.map(({ port }, i) =>
          withAdmin(port, async (c) => {
            await c.call("CLUSTER", "SET-CONFIG-EPOCH", i + 1);
            if (i < masters) await c.call("CLUSTER", "ADDSLOTSRANGE", ...defaultSlotRange(i, masters));
          }),
        ),
      );
      await withAdmin(ports[0].port, async (c) => {
        for (let i = 1; i < total; i++) await c.call("CLUSTER", "MEET", HOST, ports[i].port, ports[i].busPort);
      });
      if (replicas > 0) {
        // A replica can only follow a master it has heard of.
        const known = await waitFor(
          async () => (await Promise.all(ports.map(({ port }) => withAdmin(port, async (c) => parseClusterNodes(String(await c.call("CLUSTER", "NODES")))))))
            .every((list) => list.length === total && list.every((n) => !n.flags.includes("handshake") && !n.flags.includes("noaddr"))),
          readyTimeoutMs,
          50,
        );
        if (!known) throw new Error(`cluster nodes did not all meet within ${readyTimeoutMs} ms`);
        for (let i = masters; i < total; i++) {
          await withAdmin(ports[i].port, (c) => c.call("CLUSTER", "REPLICATE", ids[(i - masters) % masters]));
        }
      }
    }

    const nodes: ClusterNode[] = ports.map(({ port, busPort }, i) => ({
      index: i,
      role: i < masters ? "master" : "replica",
      host: HOST,
      port,
      busPort,
      id: ids[i],
      ...(i < masters ? { slots: defaultSlotRange(i, masters) } : { replicaOf: (i - masters) % masters }),
      dataDir: nodeDir(i),
      pid: servers[i]!.pid,
    }));

    const waitUntilOk = async (timeoutMs = readyTimeoutMs): Promise<void> => {
      const live = nodes.filter((n) => servers[n.index]);
      const states = new Map<number, string>();
      const ok = await waitFor(
        async () => {
          const results = await Promise.all(
            live.map(async (n) => {
              try {
                return await withAdmin(n.port, async (c) => {
                  const info = String(await c.call("CLUSTER", "INFO"));
                  const state = infoField(info, "cluster_state") ?? "?";
                  const known = Number(infoField(info, "cluster_known_nodes"));
                  let ready = state === "ok" && known === total;
                  if (ready && n.role === "replica") {
                    // A replica counts once it has synced with its master.
                    const repl = String(await c.call("INFO", "replication"));
                    ready = infoField(repl, "master_link_status") === "up" || infoField(repl, "role") === "master";
                  }
                  states.set(n.index, `${state}, knows ${known}/${total}`);
                  return ready;
                });
              } catch (err) {
                states.set(n.index, (err as Error).message);
                return false;
              }
            }),
          );
          return results.every(Boolean);
        },
        timeoutMs,
        50,
      );
      if (!ok) {
        const detail = live.map((n) => `node ${n.index} (:${n.port}): ${states.get(n.index) ?? "no answer"}`).join("; ");
        throw new Error(`cluster not ok within ${timeoutMs} ms: ${detail}`);
      }
    };

    await waitUntilOk();
    if (replicas > 0) {
      // Clients learn replicas from CLUSTER SLOTS, which lists them only once gossip has told each node.
      const seen = await waitFor(
        async () =>
          (
            await Promise.all(
              ports.map(({ port }) =>
                withAdmin(port, async (c) => {
                  const ranges = (await c.call("CLUSTER", "SLOTS")) as unknown[][];
                  return ranges.length > 0 && ranges.every((r) => r.length === 3 + replicas);
                }).catch(() => false),
              ),
            )
          ).every(Boolean),
        readyTimeoutMs,
        50,
      );
      if (!seen) throw new Error(`not every node lists ${replicas} replica(s) per master in CLUSTER SLOTS within ${readyTimeoutMs} ms`);
    }
    log(`cluster ok: ${nodes.map((n) => `${n.role} :${n.port}`).join(", ")}`);
    const masterNodes = nodes.slice(0, masters);
    const nodeAt = (index: number) => {
      const node = nodes[index];
      if (!node) throw new Error(`no node ${index} (the cluster has ${total})`);
      return node;
    };

    return {
      nodes,
      masters: masterNodes,
      seedList: masterNodes.map((n) => `${HOST}:${n.port}`).join(","),
      startupNodes: masterNodes.map((n) => ({ host: HOST, port: n.port })),
      binary: bin,
      dataDir: dir,
      async topology() {
        let lastError: unknown = new Error("no node is running");
        for (const n of nodes) {
          if (!servers[n.index]) continue;
          try {
            const list = await withAdmin(n.port, async (c) => parseClusterNodes(String(await c.call("CLUSTER", "NODES"))));
            return list.map((e) => ({
              index: nodes.findIndex((x) => x.id === e.id),
              id: e.id,
              role: e.flags.includes("master") ? ("master" as const) : ("replica" as const),
              ...(e.masterId ? { masterId: e.masterId } : {}),
              slots: e.slots,
              flags: e.flags.filter((f) => !["myself", "master", "slave"].includes(f)),
            }));
          } catch (err) {
            lastError = err;
          }
        }
        throw lastError;
      },
      waitUntilOk,
      async kill(index) {
        const node = nodeAt(index);
        const server = servers[index];
        if (!server) return;
        process.kill(server.pid, "SIGKILL");
        await server.stop();
        servers[index] = undefined;
        node.pid = undefined;
      },
      async stopNode(index) {
        const node = nodeAt(index);
        await servers[index]?.stop();
        servers[index] = undefined;
        node.pid = undefined;
      },
      async restart(index) {
        const node = nodeAt(index);
        if (servers[index]) return;
        servers[index] = await startNode(index);
        node.pid = servers[index]!.pid;
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
