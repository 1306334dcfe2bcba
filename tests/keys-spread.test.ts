/**
 * Hash tags of partitions and feed buckets spread over the slot space, so on
 * an evenly split cluster every master owns about as many of each; one
 * partition / one bucket keep the names they always had.
 */
import { describe, expect, it } from "vitest";
import { keySlot } from "../functions/key-slot";
import { CLUSTER_KEY_DEFAULTS, createKeys, spreadTag } from "../functions/keys";
import { defaultSlotRange } from "../worker-host/cluster-launcher";

const slotsOf = new Map<string, number[]>();
/** Slots of the n tags (computed once per letter and n). */
function tagSlots(letter: "p" | "b", n: number): number[] {
  let slots = slotsOf.get(`${letter}${n}`);
  if (!slots) slotsOf.set(`${letter}${n}`, (slots = Array.from({ length: n }, (_, i) => keySlot(spreadTag(letter, i, n)))));
  return slots;
}

/** How many of the n tags each of m masters owns under the valkey-cli slot split. */
function perMaster(letter: "p" | "b", n: number, m: number): number[] {
  const ranges = Array.from({ length: m }, (_, i) => defaultSlotRange(i, m));
  const counts = new Array(m).fill(0);
  for (const slot of tagSlots(letter, n)) counts[ranges.findIndex(([a, b]) => slot >= a && slot <= b)]++;
  return counts;
}

const within = (counts: number[], n: number, tolerance: number) => counts.every((c) => Math.abs(c - n / counts.length) <= tolerance * (n / counts.length));

describe("spread hash tags", () => {
  it("keep today's names with one partition and one bucket", () => {
    const keys = createKeys({ prefix: "ep", partitions: 1, feedBuckets: 1 });
    expect(keys.stream("fetcher", 0)).toBe("ep:{p0}:s:fetcher");
    expect(keys.run("r1")).toBe("ep:{p0}:run:r1");
    expect(keys.feed("u0001")).toBe("ep:{b0}:feed:u0001");
    expect(keys.feedChannel(0)).toBe("ep:{b0}:notify");
  });

  it("with 3 masters, the cluster defaults put the same number of partitions and buckets on each", () => {
    expect(perMaster("p", CLUSTER_KEY_DEFAULTS.partitions, 3)).toEqual([4, 4, 4]);
    expect(perMaster("b", CLUSTER_KEY_DEFAULTS.feedBuckets, 3)).toEqual([8, 8, 8]);
    // ...and on 2, 4 and 6 masters.
    for (const m of [2, 4, 6]) {
      expect(perMaster("p", CLUSTER_KEY_DEFAULTS.partitions, m)).toEqual(new Array(m).fill(CLUSTER_KEY_DEFAULTS.partitions / m));
      expect(perMaster("b", CLUSTER_KEY_DEFAULTS.feedBuckets, m)).toEqual(new Array(m).fill(CLUSTER_KEY_DEFAULTS.feedBuckets / m));
    }
  });

  it("with 3 masters, any 8..200 partitions or buckets land within 25% of the mean per master", () => {
    const off: string[] = [];
    for (let n = 8; n <= 200; n++) {
      for (const letter of ["p", "b"] as const) {
        const counts = perMaster(letter, n, 3);
        if (!within(counts, n, 0.25)) off.push(`${letter}${n}: ${counts.join("/")}`);
      }
    }
    expect(off).toEqual([]);
  });

  it("with 2 to 8 masters, 4 per master or more land within 25% of the mean; 1,024 and 4,096 buckets too", () => {
    const off: string[] = [];
    for (let m = 2; m <= 8; m++) {
      for (const n of [4 * m, 5 * m + 1, 8 * m, 100, 1024, 4096]) {
        const counts = perMaster("b", n, m);
        if (!within(counts, n, 0.25)) off.push(`m${m} n${n}: ${counts.join("/")}`);
      }
    }
    expect(off).toEqual([]);
  });

  it("are deterministic, distinct, and in the key builder", () => {
    const keys = createKeys({ prefix: "ep", partitions: 12, feedBuckets: 24 });
    const ptags = keys.allPartitions.map((p) => /\{([^}]+)\}/.exec(keys.stream("fetcher", p))![1]);
    expect(ptags).toEqual(keys.allPartitions.map((p) => spreadTag("p", p, 12)));
    expect(new Set(ptags).size).toBe(12);
    expect(ptags.every((t, p) => t === `p${p}` || t.startsWith(`p${p}-`))).toBe(true);
    const btags = keys.allBuckets.map((b) => /\{([^}]+)\}/.exec(keys.feedKeyPrefix(b))![1]);
    expect(new Set(btags).size).toBe(24);
    // A run's checkpoint, log and streams share its partition's slot; a user's profile, feed and subscriber sets share its bucket's.
    const p = keys.partitionOf("run-7");
    expect(new Set([keys.run("run-7"), keys.runLog("run-7"), keys.stream("classifier", p), keys.deadLetters("classifier", p)].map(keySlot)).size).toBe(1);
    const b = keys.bucketOf("u0042");
    expect(new Set([keys.user("u0042"), keys.feed("u0042"), keys.subscribers("world", b), keys.fanoutDone("zz", b), keys.feedChannel(b)].map(keySlot)).size).toBe(1);
    expect(createKeys({ partitions: 12 }).stream("x", 3)).toBe(keys.stream("x", 3));
  });
});
