/**
 * The one key builder. Every Valkey key the project touches is built here, so
 * key layout, hash tags and id validation live in one place.
 *
 * Cluster layout: each run belongs to one of `partitions` partitions (FNV-1a of
 * its id). A partition's stage streams, dead letters, stats, and the run's
 * checkpoint and activity log all carry the tag `{p<N>}`, so one commit script
 * touches exactly one slot. Keys touched alone (tool cache entries) carry no
 * tag on purpose, so they spread across the cluster.
 */
import { z } from "zod";

/** Stage names: short, lowercase, safe inside a key. */
export const StageName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,31}$/, "stage names are 1-32 chars of a-z, 0-9 and '-', starting with a letter");

/** Run ids: 1-64 chars of [A-Za-z0-9_-]; never free text in a key. */
export const RunId = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, "run ids are 1-64 chars of A-Z, a-z, 0-9, '_' and '-'");

/** 32-bit FNV-1a, stable across runtimes (used to pick partitions and buckets). */
export function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

export interface KeyOptions {
  /** Namespace for every key (tests use a random one). */
  prefix?: string;
  /** Number of run partitions (1 on a single server, more on a cluster). */
  partitions?: number;
}

export type Keys = ReturnType<typeof createKeys>;

/**
 * Builds the key builder for one deployment.
 * @example
 * const keys = createKeys({ prefix: "ep", partitions: 1 });
 * keys.stream("fetcher", 0); // "ep:{p0}:s:fetcher"
 */
export function createKeys({ prefix = "ep", partitions = 1 }: KeyOptions = {}) {
  if (!/^[A-Za-z0-9_.-]{1,32}$/.test(prefix)) throw new Error(`invalid key prefix: ${prefix}`);
  if (!Number.isInteger(partitions) || partitions < 1 || partitions > 1024) {
    throw new Error(`partitions must be an integer 1..1024, got ${partitions}`);
  }
  const tag = (p: number) => `${prefix}:{p${p}}`;
  const stage = (name: string) => StageName.parse(name);
  const run = (id: string) => RunId.parse(id);
  const partitionOf = (runId: string) => fnv1a(run(runId)) % partitions;
  const all = Array.from({ length: partitions }, (_, i) => i);

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
    /**
     * Global counters hash (fan-out deliveries, tool cache hits/misses). Touched
     * alone with HINCRBY, outside any script, so it needs no tag.
     */
    counters: () => `${prefix}:counters`,
    /** Consumer group name of a stage (one group per stage stream). */
    group: (name: string) => stage(name),
  };
}
