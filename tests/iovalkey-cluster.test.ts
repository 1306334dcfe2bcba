/**
 * What iovalkey 0.4.0's Cluster client does on a real local cluster (3 masters,
 * 1 replica each), pinned as tests because the cluster mode is designed
 * around it (docs/cluster.md, "How it works" and "Known limits"). A test here
 * that starts failing after an iovalkey upgrade means the behaviour changed:
 * update the docs and the design with it.
 */
import { createServer, connect, type Server, type Socket } from "node:net";
import Valkey, { Cluster, Command } from "iovalkey";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keySlot } from "../functions/key-slot";
import { spreadTag } from "../functions/keys";
import { runScript, type Connection } from "../worker-host/valkey";
import { startTestCluster, type TestCluster } from "./helpers/cluster";
import { eventually } from "./helpers/valkey";

let t: TestCluster;
beforeAll(async () => {
  t = await startTestCluster({ masters: 3, replicas: 1, nodeTimeoutMs: 1000 });
});
afterAll(async () => {
  await t?.stop();
});

const nodeKey = (n: { port: number }) => `127.0.0.1:${n.port}`;
const masterOfSlot = (slot: number) => t.cluster.masters.find((m) => slot >= m.slots![0] && slot <= m.slots![1])!;
/** A hash tag whose slot master `m` serves. */
const tagOn = (m: number, from = 0) => {
  for (let i = from; ; i++) if (masterOfSlot(keySlot(`t${i}`)).index === m) return `t${i}`;
};
const admin = (port: number) => {
  const c = new Valkey(port, "127.0.0.1", { lazyConnect: true });
  c.on("error", () => {});
  return c;
};
/** Runs `fn` with a plain connection to each master. */
async function onMasters<T>(fn: (c: Valkey, m: (typeof t.cluster.masters)[number]) => Promise<T>): Promise<T[]> {
  return Promise.all(
    t.cluster.masters.map(async (m) => {
      const c = admin(m.port);
      try {
        return await fn(c, m);
      } finally {
        c.disconnect();
      }
    }),
  );
}
const errorOf = (p: Promise<unknown>) => p.then(() => "no error", (e: Error) => e.message);

describe("iovalkey 0.4.0 Cluster client", () => {
  it("EVALSHA: NOSCRIPT comes back to the caller, per node; EVAL loads a script only where its keys live; runScript's fallback works on a Cluster as is", async () => {
    const lua = `return redis.call('incr', KEYS[1]) -- ${Math.random()}`;
    const sha = String(await t.client.script("LOAD", lua));
    // SCRIPT LOAD has no key: it went to one node, not to every master.
    const loaded = (await onMasters(async (c) => ((await c.script("EXISTS", sha)) as number[])[0])).filter(Boolean);
    expect(loaded.length).toBeLessThanOrEqual(1);
    const [k0, k1] = [`{${tagOn(0)}}:n`, `{${tagOn(1)}}:n`];
    const lua2 = `${lua} again`;
    const sha2 = (await import("node:crypto")).createHash("sha1").update(lua2).digest("hex");
    expect(await errorOf(t.client.evalsha(sha2, 1, k0))).toMatch(/^NOSCRIPT/);
    await t.client.eval(lua2, 1, k0);
    expect(await t.client.evalsha(sha2, 1, k0)).toBe(2);
    expect(await errorOf(t.client.evalsha(sha2, 1, k1))).toMatch(/^NOSCRIPT/); // the other master never saw it
    // defineCommand scripts load themselves on each connection (EVAL first, then EVALSHA).
    t.client.defineCommand("bumpTest", { numberOfKeys: 1, lua: `${lua} defined` });
    expect(await (t.client as unknown as { bumpTest(k: string): Promise<number> }).bumpTest(k1)).toBe(1);
    // The project's runScript (EVALSHA, EVAL on NOSCRIPT) routes by its keys on a Cluster too.
    const stream = `{${tagOn(2)}}:s`;
    await t.client.xadd(stream, "*", "a", "1");
    await t.client.xgroup("CREATE", stream, "g", "0");
    expect(await runScript(t.client as unknown as Connection, "streamBacklog", [stream], ["g"])).toEqual([1, 0, 1]);
  });

  it("connects with one refresh and a +node per node CLUSTER SLOTS lists; it never refreshes the slot map by itself (slotsRefreshInterval is unset, though its docs say 5000)", async () => {
    const c = t.connect();
    const events: string[] = [];
    c.on("+node", (n: Valkey) => events.push(`+${n.options.port}`));
    c.on("refresh", () => events.push("refresh"));
    await c.get("warm-up");
    expect(events.filter((e) => e === "refresh")).toHaveLength(1);
    expect(events.filter((e) => e.startsWith("+")).sort()).toEqual(t.cluster.nodes.map((n) => `+${n.port}`).sort());
    expect(c.options.slotsRefreshInterval).toBeUndefined();
    expect(c.nodes("master").map((n) => nodeKey(n.options as { port: number })).sort()).toEqual(t.cluster.masters.map(nodeKey).sort());
    expect(c.slots[t.cluster.masters[1].slots![0]][0]).toBe(nodeKey(t.cluster.masters[1]));
  });

  it("a blocking read needs a connection of its own: nodes() are the shared command connections, they never reconnect, and XREADGROUP over two slots of one master is CROSSSLOT", async () => {
    const key = `{${tagOn(0)}}:b`;
    const shared = t.client.nodes("master").find((n) => nodeKey(n.options as { port: number }) === t.client.slots[keySlot(key)][0])!;
    const order: string[] = [];
    await Promise.all([shared.blpop(`${key}:list`, 0.3).then(() => order.push("blpop")), t.client.get(key).then(() => order.push("get"))]);
    expect(order).toEqual(["blpop", "get"]); // the GET waited behind the blocked BLPOP
    expect(shared.options.retryStrategy).toBeNull();
    expect(shared.duplicate().options.retryStrategy).toBeNull();
    // Two partitions on master 0 (spread tags of 12), two slots: one XREADGROUP cannot read both.
    const [p0, p1] = [0, 1].map((p) => `{${spreadTag("p", p, 12)}}:s`);
    expect(masterOfSlot(keySlot(p0)).index).toBe(0);
    expect(masterOfSlot(keySlot(p1)).index).toBe(0);
    for (const s of [p0, p1]) {
      await t.client.xadd(s, "*", "a", "1");
      await t.client.xgroup("CREATE", s, "g", "0");
    }
    expect(await errorOf(t.client.xreadgroup("GROUP", "g", "c", "STREAMS", p0, p1, ">", ">"))).toMatch(/^CROSSSLOT/);
    const own = admin(t.cluster.masters[0].port);
    expect(await errorOf(own.xreadgroup("GROUP", "g", "c", "STREAMS", p0, p1, ">", ">"))).toMatch(/^CROSSSLOT/);
    expect(await own.xreadgroup("GROUP", "g", "c", "COUNT", 10, "BLOCK", 100, "STREAMS", p0, ">")).toHaveLength(1);
    own.disconnect();
  });

  it("pipelines and MULTI: keys on two masters are refused before sending; two slots on one master pass in a pipeline and are CROSSSLOT in MULTI", async () => {
    const [a, b] = [`{${tagOn(0)}}:x`, `{${tagOn(1)}}:x`];
    expect(await errorOf(t.client.pipeline().set(a, 1).set(b, 1).exec())).toBe("All keys in the pipeline should belong to the same slots allocation group");
    expect(await errorOf(t.client.multi().set(a, 1).set(b, 1).exec())).toBe("All keys in the pipeline should belong to the same slots allocation group");
    const [c, d] = [`{${tagOn(0)}}:y`, `{${tagOn(0, Number(tagOn(0).slice(1)) + 1)}}:y`];
    expect(keySlot(c)).not.toBe(keySlot(d));
    expect(await t.client.pipeline().set(c, 1).set(d, 2).exec()).toEqual([[null, "OK"], [null, "OK"]]);
    expect(await errorOf(t.client.multi().set(c, 1).set(d, 2).exec())).toMatch(/CROSSSLOT|EXECABORT/);
  });

  it("upper-case command names carry no keys, so iovalkey cannot route them (the in-process requester sends HGETALL etc. upper-case today)", () => {
    expect(new Command("GET", ["k"]).getKeys()).toEqual([]);
    expect(new Command("get", ["k"]).getKeys()).toEqual(["k"]);
    expect(new Command("evalsha", ["sha", 2, "a", "b", "arg"]).getKeys()).toEqual(["a", "b"]);
  });

  it("resharding: MOVED is followed by single commands and by a MULTI sent with a stale slot map; during the migration (ASK) multi-key commands fail (TRYAGAIN) and a pipeline reads a key not yet moved as missing", async () => {
    const [key, key2] = ["{mig}:a", "{mig}:b"];
    const slot = keySlot(key);
    const src = masterOfSlot(slot);
    const dst = t.cluster.masters.find((m) => m !== src)!;
    await t.client.set(key, "A");
    await t.client.set(key2, "B");
    const stale = t.connect();
    await stale.get(key);
    const events: string[] = [];
    t.client.on("refresh", () => events.push("refresh"));

    const [a, b] = [admin(src.port), admin(dst.port)];
    await b.call("CLUSTER", "SETSLOT", slot, "IMPORTING", src.id);
    await a.call("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.id);
    await a.call("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", key);
    // One key: ASK is followed (GET, and a MULTI on that key alone).
    expect(await t.client.get(key)).toBe("A");
    expect(await t.client.get(key2)).toBe("B");
    expect(await t.client.multi().get(key).set(key, "A2").exec()).toEqual([[null, "A"], [null, "OK"]]);
    // Two keys, one moved: the server answers TRYAGAIN until the slot is done.
    expect(await errorOf(t.client.multi().get(key).get(key2).exec())).toMatch(/TRYAGAIN/);
    // An EVAL is retried: after TRYAGAIN iovalkey tries a random master (which answers MOVED), so the last error is either.
    expect(await errorOf(t.client.eval("return {redis.call('get', KEYS[1]), redis.call('get', KEYS[2])}", 2, key, key2))).toMatch(/^Too many Cluster redirections. Last error: ReplyError: (TRYAGAIN|MOVED)/);
    // A pipeline answering ASK for one command is resent whole with ASKING to the target, where key2 is not (yet): null, not "B".
    expect(await t.client.pipeline().get(key).get(key2).exec()).toEqual([[null, "A2"], [null, null]]);

    await a.call("MIGRATE", "127.0.0.1", dst.port, "", 0, 5000, "KEYS", key2);
    await onMasters((c) => c.call("CLUSTER", "SETSLOT", slot, "NODE", dst.id));
    a.disconnect();
    b.disconnect();
    events.length = 0;
    expect(await t.client.get(key2)).toBe("B"); // MOVED, followed
    expect(t.client.slots[slot][0]).toBe(nodeKey(dst));
    await eventually(() => events.includes("refresh")); // the refresh a MOVED starts runs after the command is answered
    // The stale client sends its MULTI to the old owner: MOVED for every command, resent whole to the new one.
    expect(stale.slots[slot][0]).toBe(nodeKey(src));
    expect(await stale.multi().get(key).set(key2, "B2").exec()).toEqual([[null, "A2"], [null, "OK"]]);
    expect(await t.client.get(key2)).toBe("B2");
  });

  it("a reply lost with its connection makes the client send the command again: an INCR is applied twice (cluster and standalone alike)", async () => {
    let dropNextReply = false;
    const servers: Server[] = [];
    const natMap: Record<string, { host: string; port: number }> = {};
    // A proxy in front of every node, which can swallow one reply and close the connection.
    for (const n of t.cluster.nodes) {
      const srv = createServer((down: Socket) => {
        const up = connect(n.port, "127.0.0.1");
        down.on("data", (d) => up.write(d));
        up.on("data", (d) => {
          if (!dropNextReply) return void down.write(d);
          dropNextReply = false;
          down.destroy();
          up.destroy();
        });
        for (const s of [down, up]) {
          s.on("error", () => {});
          s.on("close", () => (s === down ? up : down).destroy());
        }
      });
      await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
      servers.push(srv);
      natMap[nodeKey(n)] = { host: "127.0.0.1", port: (srv.address() as { port: number }).port };
    }
    try {
      const viaProxy = t.connect({ natMap });
      await viaProxy.set("twice", 0);
      dropNextReply = true;
      expect(await viaProxy.incr("twice")).toBe(2);
      expect(await t.client.get("twice")).toBe("2");

      const owner = natMap[nodeKey(masterOfSlot(keySlot("twice-solo")))];
      const solo = new Valkey({ ...owner, retryStrategy: (n) => Math.min(n * 50, 500), maxRetriesPerRequest: null });
      await solo.set("twice-solo", 0);
      dropNextReply = true;
      expect(await solo.incr("twice-solo")).toBe(2); // autoResendUnfulfilledCommands (default true)
      solo.disconnect();
    } finally {
      servers.forEach((s) => s.close());
    }
  });

  it("sharded pub/sub (iovalkey#13): one subscriber connection on one node, so channels of other masters fail to subscribe; one plain SSUBSCRIBE connection per master gets them all; classic PUBLISH, also from a script, reaches a subscriber on any node", async () => {
    const channels = [0, 1, 2].map((m) => `{${tagOn(m, 100)}}:notify`);
    const sub = t.client.duplicate();
    sub.on("error", () => {});
    const got: string[] = [];
    sub.on("smessage", (ch: string) => got.push(ch));
    const subscribed: string[] = [];
    for (const ch of channels) {
      const err = await errorOf(sub.ssubscribe(ch));
      if (err === "no error") subscribed.push(ch);
      else expect(err).toMatch(/Too many Cluster redirections[\s\S]*MOVED/);
    }
    expect(subscribed.length).toBeLessThanOrEqual(1);
    for (const ch of channels) await t.client.spublish(ch, "hi");
    await eventually(() => got.length === subscribed.length);
    expect(got).toEqual(subscribed);
    await sub.quit();

    // Workaround: a plain connection per master, subscribed to the channels of its slots.
    const perMaster = t.cluster.masters.map((m) => {
      const c = new Valkey(m.port, "127.0.0.1");
      c.on("error", () => {});
      return c;
    });
    const all: string[] = [];
    await Promise.all(perMaster.map((c, m) => c.ssubscribe(channels[m]).then(() => c.on("smessage", (ch: string) => all.push(ch)))));
    for (const ch of channels) await t.client.spublish(ch, "hi");
    // From a script too: the channel carries the script keys' tag, so SPUBLISH stays in the slot.
    await t.client.eval("return redis.call('spublish', KEYS[1], 'from-script')", 1, channels[1]);
    await eventually(() => all.length === 4);
    expect(all.sort()).toEqual([...channels, channels[1]].sort());
    perMaster.forEach((c) => c.disconnect());

    // Classic pub/sub is broadcast over the cluster bus: a subscriber anywhere hears every node.
    const classic = t.client.duplicate();
    classic.on("error", () => {});
    const heard: string[] = [];
    classic.on("message", (_ch: string, msg: string) => heard.push(msg));
    await classic.subscribe("plain-notify");
    await t.client.eval("return redis.call('publish', ARGV[1], 'from-script')", 1, `{${tagOn(2)}}:k`, "plain-notify");
    await t.client.publish("plain-notify", "plain");
    await eventually(() => heard.length === 2);
    expect(heard.sort()).toEqual(["from-script", "plain"]);
    await classic.quit();
  });

  // Last: it changes the topology.
  it("failover: the client drops and re-creates the dead master's connection while its slots still point there, writes to them fail until the replica takes over, then go to the new master", async () => {
    const c = t.connect();
    const key = `{${tagOn(0, 200)}}:f`;
    await c.set(key, "before");
    const victim = t.cluster.masters[0];
    const replica = t.cluster.nodes.find((n) => n.replicaOf === 0)!;
    const events: string[] = [];
    c.on("-node", (n: Valkey) => events.push(`-${n.options.port}`));
    c.on("+node", (n: Valkey) => events.push(`+${n.options.port}`));
    const errors: string[] = [];
    let stop = false;
    const writer = (async () => {
      for (let i = 0; !stop; i++) {
        await c.set(key, i).catch((e: Error) => errors.push(e.message));
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await t.cluster.kill(victim.index);
    await t.cluster.waitUntilOk(20_000);
    await eventually(async () => (await c.set(key, "probe")) === "OK" && c.slots[keySlot(key)][0] === nodeKey(replica), { timeoutMs: 10_000, stepMs: 50 });
    stop = true;
    await writer;
    expect(events).toContain(`-${victim.port}`);
    expect(await c.set(key, "after")).toBe("OK");
    expect(await c.get(key)).toBe("after");
    expect(errors.every((e) => /Too many Cluster redirections|CLUSTERDOWN|Connection is closed/.test(e))).toBe(true);
    console.log(`[failover] ${errors.length} failed write(s) while the replica took over; ${events.filter((e) => e === `-${victim.port}`).length} -node event(s) for the dead master`);
  });
});
