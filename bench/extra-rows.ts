/**
 * Rows that depend on other parts of the project: the news pipeline with its
 * real handlers, our fan-out Lua, feed memory, the tool cache (news) and
 * HTTP mode through workerd (edge). Each row says "not measured (reason)"
 * when its part is missing.
 */
import type { BenchArticle } from "./articles";
import type { BenchServer } from "./harness";
import type { Series } from "./svg";

type Row = { row: string; ours: string; baseline: string; ratio: string; target: string; verdict: string };

export interface ExtraRows {
  results: Record<string, unknown>;
  hasFanout: boolean;
  /** [pipeline name, measureHostProcess result or NotMeasured]. */
  hostProcessCandidates: Array<[string, unknown]>;
  pipelineRows(bullmqPassThrough: unknown): Row[];
  httpRows(passThrough: unknown): Row[];
  fanoutRows(naive: unknown): Row[];
  fanoutSeries(): Series[];
  memoryRows(): Row[];
  toolCacheRows(): Row[];
}

const missing = (row: string, reason: string, target = "-"): Row => ({ row, ours: `not measured (${reason})`, baseline: "-", ratio: "-", target, verdict: "-" });

/** Measures the rows that need the news pipeline and edge mode. */
export async function extraRows(_o: { server: BenchServer; articles: BenchArticle[]; quick: boolean; flush(): Promise<void> }): Promise<ExtraRows> {
  const reason = "news pipeline not merged into this branch yet";
  return {
    results: { news: { notMeasured: reason }, http: { notMeasured: "edge HTTP mode not merged yet" }, fanout: { notMeasured: reason }, feedMemory: { notMeasured: reason }, toolCache: { notMeasured: reason } },
    hasFanout: false,
    hostProcessCandidates: [["news", { notMeasured: reason }]],
    pipelineRows: () => [missing("1a pipeline, real news handlers, in-process", reason, ">= 10x BullMQ")],
    httpRows: () => [missing("3 HTTP mode through workerd", "edge HTTP mode not merged yet")],
    fanoutRows: () => [],
    fanoutSeries: () => [],
    memoryRows: () => [missing("6 bytes per buffered feed entry", reason, "<= 40 B")],
    toolCacheRows: () => [missing("7 tool cache hit path / replay speed-up", reason)],
  };
}
