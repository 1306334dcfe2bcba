/**
 * keySlot (functions/key-slot.ts) answers what the server's CLUSTER KEYSLOT
 * answers, hash-tag edge cases and UTF-8 included.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import Valkey from "iovalkey";
import { crc16, hashTag, keySlot } from "../functions/key-slot";
import { launchCluster, type RunningCluster } from "../worker-host/cluster-launcher";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createKeys } from "../functions/keys";

let cluster: RunningCluster;
let conn: Valkey;
let dir: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "edgepipe-keyslot-"));
  // One node is enough: CLUSTER KEYSLOT only needs cluster mode on.
  cluster = await launchCluster({ dataDir: dir, masters: 1, appendOnly: false });
  conn = new Valkey(cluster.nodes[0].port, "127.0.0.1");
});
afterAll(async () => {
  await conn?.quit();
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const serverSlots = async (keys: string[]) => {
  const pipe = conn.pipeline();
  for (const k of keys) pipe.call("CLUSTER", "KEYSLOT", k);
  return ((await pipe.exec()) ?? []).map(([err, slot]) => {
    if (err) throw err;
    return Number(slot);
  });
};

describe("keySlot", () => {
  it("is CRC16/XMODEM (check value 0x31C3 for '123456789')", () => {
    expect(crc16(new TextEncoder().encode("123456789"))).toBe(0x31c3);
  });

  it("matches CLUSTER KEYSLOT on hash-tag edge cases and UTF-8", async () => {
    const keys = ["", "a", "foo", "{}", "{", "}", "}{", "{}{a}", "a{b}c", "{a}{b}", "{{a}}", "a{}b{c}", "x{y", "{p0}", "ep:{p0}:s:fetcher", "ep:{b3}:feed:u0001", "ep:{seq}:article", "ü{ß}", "日本{語}", "emoji🙂{tag🙂}", "{🙂}"];
    expect(keys.map(keySlot)).toEqual(await serverSlots(keys));
    expect(hashTag("a{b}c")).toBe("b");
    expect(hashTag("a{}b{c}")).toBeUndefined();
    expect(hashTag("plain")).toBeUndefined();
  });

  it("matches CLUSTER KEYSLOT on 3,000 random keys and on every key the key builder makes", async () => {
    const alphabet = "ab{}:-_09xyzé日";
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const random = Array.from({ length: 3000 }, () => Array.from({ length: 1 + Math.floor(rand() * 12) }, () => alphabet[Math.floor(rand() * alphabet.length)]).join(""));
    const keys = createKeys({ prefix: "ep", partitions: 8, feedBuckets: 16 });
    const built = [
      ...keys.allPartitions.flatMap((p) => [keys.stream("fetcher", p), keys.deadLetters("fetcher", p), keys.stageStats("fetcher", p)]),
      ...keys.allBuckets.flatMap((b) => [keys.subscribers("world", b), keys.feedChannel(b), keys.fanoutDone("1a", b)]),
      keys.run("run-1"), keys.runLog("run-1"), keys.user("u0001"), keys.feed("u0001"), keys.articleSeq(), keys.runFeedId("run-1"),
    ];
    const all = [...random, ...built];
    expect(all.map(keySlot)).toEqual(await serverSlots(all));
  });
});
