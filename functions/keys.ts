/**
 * The one key builder. Every Valkey key the project touches is built here, so
 * key layout, hash tags and id validation live in one place.
 *
 * Cluster layout: each run belongs to one of `partitions` partitions (FNV-1a of
 * its id). A partition's stage streams, dead letters, stats, and the run's
 * checkpoint and activity log all carry the partition's tag (`{p<N>}`, see
 * spreadTag), so one commit script touches exactly one slot. Keys touched
 * alone (tool cache entries) carry no tag on purpose, so they spread across
 * the cluster.
 */
import { z } from "zod";
import { CLUSTER_SLOTS, crc16Ascii } from "./key-slot";

/** Pattern of stage names (shared by the zod schema and the envelope fast path). */
export const STAGE_NAME_PATTERN = /^[a-z][a-z0-9-]{0,31}$/;
/** Pattern of run ids (shared by the zod schema and the envelope fast path). */
export const RUN_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Stage names: short, lowercase, safe inside a key. */
export const StageName = z
  .string()
  .regex(STAGE_NAME_PATTERN, "stage names are 1-32 chars of a-z, 0-9 and '-', starting with a letter");

/** Run ids: 1-64 chars of [A-Za-z0-9_-]; never free text in a key. */
export const RunId = z
  .string()
  .regex(RUN_ID_PATTERN, "run ids are 1-64 chars of A-Z, a-z, 0-9, '_' and '-'");

function stageOrTool(name: string): string {
  if (!/^[a-z][a-z0-9_-]{0,47}$/.test(name)) throw new Error(`invalid tool name: ${name}`);
  return name;
}

function hex(text: string): string {
  if (!/^[0-9a-f]{16,128}$/.test(text)) throw new Error("hashes in keys are 16-128 lowercase hex chars");
  return text;
}

/** 32-bit FNV-1a, stable across runtimes (used to pick partitions and buckets). */
export function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** Tags are searched in at most this many slot windows (each >= 128 slots wide, so a tag takes ~256 tries). */
const MAX_TAG_WINDOWS = 128;

/**
 * The hash tag of partition (or bucket) `i` of `n`, chosen so that the n tags
 * spread evenly over the slot space, hence over the masters of any evenly
 * split cluster: the slots are cut into W = min(n, 128) equal windows, and tag
 * i is the first of `<letter><i>`, `<letter><i>-1`, `<letter><i>-2`, ... whose
 * slot falls in the middle half of window floor(i * W / n) (the middle, so a split
 * that is off by a slot, like valkey-cli's rounding, changes nothing). With
 * n = 1 it is `<letter>0`, the name it always had. Deterministic: every
 * process and runtime computes the same tags from n alone.
 * @example
 * spreadTag("p", 0, 1); // "p0"
 * spreadTag("p", 1, 3); // "p1-5": the first of p1, p1-1, ... whose slot is in 6827..9557
 */
export function spreadTag(letter: "p" | "b", i: number, n: number): string {
  const base = `${letter}${i}`;
  if (n === 1) return base;
  const windows = Math.min(n, MAX_TAG_WINDOWS);
  const width = CLUSTER_SLOTS / windows;
  const from = Math.floor((i * windows) / n) * width + width / 4;
  const to = from + width / 2;
  for (let k = 0; ; k++) {
    const tag = k === 0 ? base : `${base}-${k}`;
    const slot = crc16Ascii(tag) % CLUSTER_SLOTS;
    if (slot >= from && slot < to) return tag;
  }
}

/**
 * PARTITIONS and FEED_BUCKETS for a cluster: 12 and 24 divide evenly over 2,
 * 3, 4 and 6 masters (and stay within 25% of even on 5), so a cluster can grow
 * without changing them (changing either remaps runs or users; see docs/cluster.md).
 */
export const CLUSTER_KEY_DEFAULTS = { partitions: 12, feedBuckets: 24 } as const;

/** spreadTag for every index 0..n-1, computed on first use of each. */
function tagTable(letter: "p" | "b", n: number, prefix: string): (i: number) => string {
  const table: string[] = new Array(n);
  return (i) => (table[i] ??= `${prefix}:{${spreadTag(letter, i, n)}}`);
}

const U64_MAX = 18446744073709551615n;

/**
 * Stream entry ids as the server accepts them: `<ms>-<seq>`, two unsigned
 * 64-bit numbers (a larger one would make a script fail on the server).
 */
export const StreamEntryId = z
  .string()
  .max(41)
  .regex(/^\d{1,20}-\d{1,20}$/, "stream ids look like 1700000000000-0")
  // The regex check does not stop the refinement: it guards BigInt itself.
  .refine((id) => !/^\d{1,20}-\d{1,20}$/.test(id) || id.split("-").every((part) => BigInt(part) <= U64_MAX), "both parts of a stream id are unsigned 64-bit numbers");

/** Flow keys used as they are in key names (a hashed one stays as it is); any other key is hashed (see flowKeyPart). */
const FLOW_KEY_PATTERN = /^(?:[A-Za-z0-9_.-]{1,64}|~[0-9a-f]{1,8})$/;

/**
 * A flow key (a stage's `concurrency.key(...)` etc., e.g. a tenant id) as it
 * appears in key names: itself when short and plain, else `~` and its FNV-1a
 * hex, so user input never names an arbitrary key or breaks a hash tag.
 */
export function flowKeyPart(key: string): string {
  return FLOW_KEY_PATTERN.test(key) ? key : `~${fnv1a(key).toString(16)}`;
}

/** The limits a stage can declare (see StageDef in pipeline.ts). */
export type FlowKind = "concurrency" | "rate" | "budget" | "lanes";

/** User ids: 1-64 chars of [A-Za-z0-9_-]. */
export const UserId = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, "user ids are 1-64 chars of A-Z, a-z, 0-9, '_' and '-'");

/** Pattern of compact feed ids (shared by the zod schema and the key fast path). */
const FEED_ID_PATTERN = /^[0-9a-z]{1,13}$/;

/** Compact article feed id: base-36 of a global sequence number. */
export const FeedId = z.string().regex(FEED_ID_PATTERN, "feed ids are base-36 sequence numbers");

export interface KeyOptions {
  /** Namespace for every key (tests use a random one). */
  prefix?: string;
  /** Number of run partitions (1 on a single server, more on a cluster). */
  partitions?: number;
  /** Number of subscriber/feed buckets (fan-out is one script call per non-empty bucket). */
  feedBuckets?: number;
}

export type Keys = ReturnType<typeof createKeys>;

/**
 * Builds the key builder for one deployment.
 * @example
 * const keys = createKeys({ prefix: "ep", partitions: 1 });
 * keys.stream("fetcher", 0); // "ep:{p0}:s:fetcher"
 */
export function createKeys({ prefix = "ep", partitions = 1, feedBuckets = 16 }: KeyOptions = {}) {
  if (!/^[A-Za-z0-9_.-]{1,32}$/.test(prefix)) throw new Error(`invalid key prefix: ${prefix}`);
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > 1024) {
    throw new Error(`partitions must be an integer 1..1024, got ${partitions}`);
  }
  if (!Number.isInteger(feedBuckets) || feedBuckets < 1 || feedBuckets > 4096) {
    throw new Error(`feedBuckets must be an integer 1..4096, got ${feedBuckets}`);
  }
  const tag = tagTable("p", partitions, prefix);
  const btag = tagTable("b", feedBuckets, prefix);
  const user = (uid: string) => UserId.parse(uid);
  // Hot path (fan-out builds one marker per bucket and article): a regex test, zod only to throw its error.
  const feedId = (id: string) => (typeof id === "string" && FEED_ID_PATTERN.test(id) ? id : FeedId.parse(id));
  const bucketOf = (uid: string) => fnv1a(user(uid)) % feedBuckets;
  const topicName = (t: string) => {
    if (!/^[a-z][a-z0-9-]{0,31}$/.test(t)) throw new Error(`invalid topic: ${t}`);
    return t;
  };
  // Hot path (several calls per committed entry): a regex test, zod only to throw its error.
  const stage = (name: string) => (STAGE_NAME_PATTERN.test(name) ? name : StageName.parse(name));
  const run = (id: string) => (RUN_ID_PATTERN.test(id) ? id : RunId.parse(id));
  const partitionOf = (runId: string) => fnv1a(run(runId)) % partitions;
  const all = Array.from({ length: partitions }, (_, i) => i);
  // One partition: the limiters share its tag (see flowLimiter).
  const flowTag = (name: string) => (partitions === 1 ? `${tag(0)}:fl:${stage(name)}` : `${prefix}:{fl:${stage(name)}}`);

  return {
    prefix,
    partitions,
    /** Every partition index, 0..P-1. */
    allPartitions: all,
    partitionOf,
    /** Input stream of a stage in one partition. */
    stream: (name: string, p: number) => `${tag(p)}:s:${stage(name)}`,
    /** Dead-letter stream of a stage in one partition. */
    deadLetters: (name: string, p: number) => `${tag(p)}:dlq:${stage(name)}`,
    /** Hash entryId -> last error text, for entries waiting to be retried. */
    lastErrors: (name: string, p: number) => `${tag(p)}:err:${stage(name)}`,
    /** Hash of counters and latency buckets for a stage in one partition. */
    stageStats: (name: string, p: number) => `${tag(p)}:stats:${stage(name)}`,
    /** Checkpoint hash of a run. */
    run: (runId: string) => `${tag(partitionOf(runId))}:run:${run(runId)}`,
    /** Activity-log stream of a run. */
    runLog: (runId: string) => `${tag(partitionOf(runId))}:log:${run(runId)}`,
    /** Streamed output of a run (`ctx.stream.write`): a bounded stream with a TTL, in the run's partition. */
    runOutput: (runId: string) => `${tag(partitionOf(runId))}:out:${run(runId)}`,
    /** Recent-runs index of a partition: sorted set runId -> createdAt (ms), bounded by enqueue-runs.lua. */
    recentRuns: (p: number) => `${tag(p)}:recent-runs`,
    /**
     * Prefix of every checkpoint key in partition `p` (`runKeyPrefix(p) + id === run(id)`
     * for a run of that partition); list-runs.lua derives checkpoint keys from it.
     */
    runKeyPrefix: (p: number) => `${tag(p)}:run:`,
    /**
     * Global counters hash (tool cache hits/misses; fan-out deliveries of data
     * written before they moved to fanoutStats). Touched alone with HINCRBY,
     * outside any script, so it needs no tag.
     */
    counters: () => `${prefix}:counters`,
    /**
     * A counter the fsync barrier bumps before each WAITAOF (WAITAOF waits for
     * the caller connection's own last write). Touched alone, no tag.
     */
    fsyncMark: () => `${prefix}:fsync-mark`,
    feedBuckets,
    /** Every bucket index, 0..B-1. */
    allBuckets: Array.from({ length: feedBuckets }, (_, i) => i),
    /** Bucket of a user (subscriber sets, feeds and profile share its tag). */
    bucketOf,
    /** Profile hash of a user (interests), in the user's bucket. */
    user: (uid: string) => `${btag(bucketOf(uid))}:user:${user(uid)}`,
    /** Set of uids in bucket `b` subscribed to `topic`. */
    subscribers: (topic: string, b: number) => `${btag(b)}:subs:${topicName(topic)}`,
    /** A user's feed: list of compact feed ids, newest first, capped. */
    feed: (uid: string) => `${btag(bucketOf(uid))}:feed:${user(uid)}`,
    /**
     * Prefix of every feed key in bucket `b` (`feedKeyPrefix(b) + uid === feed(uid)`
     * for a uid of that bucket). The fan-out script derives feed keys of the
     * subscribers it reads from it; they share the bucket's tag, hence its slot.
     */
    feedKeyPrefix: (b: number) => `${btag(b)}:feed:`,
    /** Fan-out counters of bucket `b` (deliveries), written by the fan-out script with the deliveries. */
    fanoutStats: (b: number) => `${btag(b)}:stats`,
    /** Fan-out idempotency marker for (article, bucket). */
    fanoutDone: (id: string, b: number) => `${btag(b)}:fo:${feedId(id)}`,
    /** Pub/sub channel announcing deliveries into bucket `b` (live clients). */
    feedChannel: (b: number) => `${btag(b)}:notify`,
    /** Article body hash, stored once; feeds hold only its compact id. */
    article: (id: string) => `${prefix}:a:${feedId(id)}`,
    /** Global article sequence (INCR) that mints compact feed ids; tag {seq}, shared with runFeedId. */
    articleSeq: () => `${prefix}:{seq}:article`,
    /** Latest feed ids of a topic (list, newest first, capped). */
    topicArticles: (topic: string) => `${prefix}:topic:${topicName(topic)}`,
    /** Hash topic -> number of articles fanned out for it (all time). */
    topicCounts: () => `${prefix}:topic-counts`,
    /**
     * Feed id minted for a run (so a redelivered fetcher reuses it). Minted
     * together with articleSeq in one script, hence the same {seq} tag (the
     * sequence is one hot key anyway; these small keys expire).
     */
    runFeedId: (runId: string) => `${prefix}:{seq}:fid:${run(runId)}`,
    /** Dedupe marker of a canonical URL (value: the run that claimed it). */
    seenUrl: (urlHash: string) => `${prefix}:seen:url:${hex(urlHash)}`,
    /** Dedupe marker of a content hash of normalized title + body (value: the run that claimed it). */
    seenContent: (contentHash: string) => `${prefix}:seen:content:${hex(contentHash)}`,
    /** Tool cache entry; no hash tag, so one tool's cache spreads over the cluster. */
    toolCache: (tool: string, argsHash: string) => `${prefix}:tool:cache:${stageOrTool(tool)}:${hex(argsHash)}`,
    /** Single-flight lock of a tool cache entry. */
    toolLock: (tool: string, argsHash: string) => `${prefix}:tool:lock:${stageOrTool(tool)}:${hex(argsHash)}`,
    /** Token bucket of a tool's rate limiter. */
    toolRate: (tool: string) => `${prefix}:tool:rate:${stageOrTool(tool)}`,
    /**
     * Flow limiter of one stage, limit kind and flow key (a zset of slot leases
     * for concurrency and lanes, a token bucket for rate and budget). A stage's
     * limiters share its tag {fl:<stage>}: a batch's keys are one script call.
     * With one partition they carry the partition's tag instead (every key of
     * the deployment is then in one slot), so a batch's commit frees its
     * slots in the same call (commit-stage.lua).
     */
    flowLimiter: (name: string, kind: FlowKind, flowKey: string) => `${flowTag(name)}:${kind}:${flowKeyPart(flowKey)}`,
    /** Entries parked in a stage's priority lanes (all partitions): while above 0, new entries queue behind them. Same tag as the lanes limiter. */
    flowLanesQueued: (name: string) => `${flowTag(name)}:lanes-queued`,
    /** Ready set of a stage in partition `p`: zset "<kind>:<flow key part>" -> when its parked entries may be readmitted. */
    flowReady: (name: string, p: number) => `${tag(p)}:fr:${stage(name)}`,
    /** Prefix of the waiting lists of a stage in partition `p` (`flowWaitingPrefix + readyMember` is the list). */
    flowWaitingPrefix: (name: string, p: number) => `${tag(p)}:fw:${stage(name)}:`,
    /** Waiting list (parked entries, oldest first) of one limit kind and flow key of a stage in partition `p`. */
    flowWaiting: (name: string, p: number, kind: FlowKind, flowKey: string) => `${tag(p)}:fw:${stage(name)}:${kind}:${flowKeyPart(flowKey)}`,
    /**
     * Nonce of a signed stage request, remembered for the signature window so
     * a replay is refused. Touched alone (SET NX PX), so no tag.
     */
    stageNonce: (nonce: string) => `${prefix}:nonce:${hex(nonce)}`,
    /**
     * Idempotency record of one `Idempotency-Key` on one route (`scope`, e.g.
     * "runs"): request hash, claim lease, stored answer. Touched alone (no tag).
     */
    idempotency: (scope: string, keyHash: string) => `${prefix}:idem:${stage(scope)}:${hex(keyHash)}`,
    /** Delayed runs of a partition: sorted set runId -> due time (ms), moved to their stream by promote-due.lua. */
    delayed: (p: number) => `${tag(p)}:delayed`,
    /** Parked runs of a partition (waiting for an event): sorted set runId -> timeout (ms, +inf: none). */
    parked: (p: number) => `${tag(p)}:parked`,
    /** Prefix of every stage stream key of partition `p` (`streamKeyPrefix(p) + stage === stream(stage, p)`). */
    streamKeyPrefix: (p: number) => `${tag(p)}:s:`,
    /** Prefix of every run-log key of partition `p` (`runLogPrefix(p) + id === runLog(id)`). */
    runLogPrefix: (p: number) => `${tag(p)}:log:`,
    /** Prefix of every stats hash of partition `p` (`statsPrefix(p) + stage === stageStats(stage, p)`). */
    statsPrefix: (p: number) => `${tag(p)}:stats:`,
    /** Prefix of every dead-letter stream of partition `p` (`deadLettersPrefix(p) + stage === deadLetters(stage, p)`). */
    deadLettersPrefix: (p: number) => `${tag(p)}:dlq:`,
    /** Consumer group name of a stage (one group per stage stream). */
    group: (name: string) => stage(name),
  };
}
