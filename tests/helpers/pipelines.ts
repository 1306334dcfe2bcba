/**
 * Small pipelines and a host factory for runtime tests.
 */
import { z } from "zod";
import { createApp } from "../../functions/app";
import type { Keys } from "../../functions/keys";
import { definePipeline, defineStage, StageError, type Pipeline } from "../../functions/pipeline";
import type { AppEnv, RedisClient } from "../../functions/redis";
import { WorkerHost, type WorkerTuning } from "../../worker-host/host";
import { InProcessInvoker, type Invoker } from "../../worker-host/invoker";
import type { Connection } from "../../worker-host/valkey";

/**
 * A two-stage pipeline: `first` emits {n} to `second`; `second` ends the run.
 * Each handler counts its invocations per n in a hash (to prove exactly-once).
 */
export function countingPipeline(): Pipeline {
  const Payload = z.object({ n: z.number().int() });
  const first = defineStage({
    name: "first",
    input: Payload,
    next: ["second"],
    handle: async ({ n }, { redis, keys }) => {
      await redis.hincrby(`${keys.prefix}:calls:first`, String(n), 1);
      return { emit: [{ payload: { n } }], result: { n } };
    },
  });
  const second = defineStage({
    name: "second",
    input: Payload,
    next: [],
    handle: async ({ n }, { redis, keys }) => {
      await redis.hincrby(`${keys.prefix}:calls:second`, String(n), 1);
      return { result: { doubled: n * 2 } };
    },
  });
  return definePipeline({ name: "counting", stages: [first, second] });
}

/** A pipeline whose only stage behaves as `handle` says (throws, sleeps, ...). */
export function singleStagePipeline(handle: (payload: { n: number }, attempt: number) => Promise<unknown> | unknown): Pipeline {
  const only = defineStage({
    name: "only",
    input: z.object({ n: z.number().int() }),
    next: [],
    handle: async (payload, ctx) => ({ result: await handle(payload, ctx.attempt) }),
  });
  return definePipeline({ name: "single", stages: [only] });
}

export { StageError };

export interface TestHost {
  host: WorkerHost;
  env: AppEnv;
  app: ReturnType<typeof createApp>;
}

/** Builds a WorkerHost over `pipeline` with in-process dispatch and test-friendly timings. */
export function makeHost({
  pipeline,
  keys,
  conn,
  redis,
  tuning = {},
  invoker,
  consumer,
  log = () => {},
}: {
  pipeline: Pipeline;
  keys: Keys;
  conn: Connection;
  redis: RedisClient;
  tuning?: WorkerTuning;
  invoker?: Invoker;
  consumer?: string;
  log?: (line: string) => void;
}): TestHost {
  const app = createApp({ pipeline });
  const env: AppEnv = { REDIS: redis, KEY_PREFIX: keys.prefix, PARTITIONS: String(keys.partitions) };
  const host = new WorkerHost({
    pipeline,
    keys,
    conn,
    invoker: invoker ?? new InProcessInvoker(app, env),
    consumer,
    tuning: { blockMs: 200, visibilityMs: 400, reclaimIntervalMs: 50, backoffMs: 10, maxBackoffMs: 50, ...tuning },
    log,
  });
  return { host, env, app };
}
