/**
 * Dead letters: list them and redrive them back to their stage's stream.
 */
import { Envelope } from "./envelope";
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
  const now = Date.now();
  const counts = await Promise.all(
    keys.allPartitions.map((p) => evalScript<number>(redis, "redriveDeadLetters", [keys.deadLetters(stage, p), keys.stream(stage, p)], [max, "", keys.runLogPrefix(p), now, ...(ids ?? [])])),
  );
  return counts.reduce((a, b) => a + Number(b), 0);
}

/**
 * Redrives one dead letter with an edited payload: its envelope goes back to
 * the stage's stream with `payload` in place of the stored one and the
 * attempt reset. Returns 0 when no partition holds that dead letter.
 */
export async function redriveWithPayload(redis: RedisClient, keys: Keys, { stage, id, payload }: { stage: string; id: string; payload: unknown }): Promise<number> {
  for (const p of keys.allPartitions) {
    const entries = (await redis.xrange(keys.deadLetters(stage, p), id, id)) as Record<string, Record<string, unknown>>;
    const fields = entries?.[id];
    if (!fields) continue;
    const stored = parseEnvelope(fields.envelope);
    const parsed = Envelope.safeParse(stored);
    // A malformed entry has no run to give the payload to: a fresh envelope of a new run would hide where it came from.
    if (!parsed.success) throw new Error(`dead letter ${id} holds no valid envelope; redrive it without a payload or drop it`);
    const envelope = { ...parsed.data, attempt: 1, createdAt: Date.now(), payload };
    return Number(await evalScript<number>(redis, "redriveDeadLetters", [keys.deadLetters(stage, p), keys.stream(stage, p)], [1, JSON.stringify(envelope), keys.runLogPrefix(p), Date.now(), id]));
  }
  return 0;
}
