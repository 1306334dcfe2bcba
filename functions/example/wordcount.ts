/** Example stage 2: counts words and keeps a running total in Valkey (an idempotent side effect). */
import { z } from "zod";
import { defineStage } from "../pipeline";

export const wordcount = defineStage({
  name: "wordcount",
  input: z.object({ text: z.string() }),
  next: [],
  handle: async ({ text }, { redis, keys, runId }) => {
    const words = text.split(" ").filter(Boolean).length;
    // HSET per run is idempotent under redelivery, unlike INCRBY.
    await redis.hset(`${keys.prefix}:example:words`, { [runId]: words });
    return { result: { words } };
  },
});
