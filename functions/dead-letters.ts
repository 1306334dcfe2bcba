/**
 * Dead letters: list them and redrive them back to their stage's stream.
 */
import type { Keys } from "./keys";
import type { Pipeline } from "./pipeline";
import { evalScript, type RedisClient } from "./redis";

export interface DeadLetter {
  id: string;
  stage: string;
  error: string;
  attempts: number;
  envelope: unknown;
  sourceId?: string;
  at?: number;
  partition: number;
}

function parseEnvelope(raw: unknown): unknown {
  if (typeof raw !== "string") return raw;
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** Lists the oldest dead letters of one stage or of all stages. */
export async function listDeadLetters(redis: RedisClient, keys: Keys, pipeline: Pipeline, { stage, limit = 50 }: { stage?: string; limit?: number }): Promise<DeadLetter[]> {
  const stages = stage ? [stage] : [...pipeline.stages.keys()];
  const lists = await Promise.all(
    stages.flatMap((s) =>
      keys.allPartitions.map(async (p) => {
        const entries = (await redis.xrange(keys.deadLetters(s, p), "-", "+", limit)) as Record<string, Record<string, unknown>>;
        return Object.entries(entries ?? {}).map(([id, f]) => ({
          id,
          stage: String(f.stage ?? s),
          error: String(f.error ?? ""),
          attempts: Number(f.attempts ?? 0),
          envelope: parseEnvelope(f.envelope),
          sourceId: f.source_id !== undefined ? String(f.source_id) : undefined,
          at: f.at !== undefined ? Number(f.at) : undefined,
          partition: p,
        }));
      }),
    ),
  );
  return lists.flat().sort((a, b) => (a.id < b.id ? -1 : 1)).slice(0, limit);
}

/** Moves dead letters of a stage back to its input stream; all (up to `max`) when no ids are given. */
export async function redriveDeadLetters(redis: RedisClient, keys: Keys, { stage, ids, max = 1000 }: { stage: string; ids?: string[]; max?: number }): Promise<number> {
  const counts = await Promise.all(
    keys.allPartitions.map((p) => evalScript<number>(redis, "redriveDeadLetters", [keys.deadLetters(stage, p), keys.stream(stage, p)], [max, ...(ids ?? [])])),
  );
  return counts.reduce((a, b) => a + Number(b), 0);
}
