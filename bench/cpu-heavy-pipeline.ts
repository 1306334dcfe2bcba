// The CPU-heavy stage of the bench's cluster rows (bench/cluster.ts): one
// stage that computes for CRUNCH_MS of CPU per envelope (default 2), so
// throughput is bounded by the host processes' CPU, not by the servers.
import { z } from "zod";
import { definePipeline, defineStage } from "../functions/pipeline";

const crunchMs = Number(process.env.CRUNCH_MS ?? 2);

const crunch = defineStage({
  name: "crunch",
  input: z.object({ n: z.number().int() }),
  next: [],
  handle: ({ n }) => {
    const until = performance.now() + crunchMs;
    let x = n;
    while (performance.now() < until) x = (x * 1103515245 + 12345) % 2147483648;
    return { result: { x } };
  },
});

export default definePipeline({ name: "cpu-heavy", stages: [crunch] });
