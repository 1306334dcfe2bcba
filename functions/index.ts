/**
 * The framework (`edgepipe`): stages, pipelines, apps, the Hono app and the
 * key builder. Workers-safe: Web APIs, hono, zod and @upstash/redis only.
 * Apps (the news app is one: `edgepipe/news`) import from here; nothing here
 * imports an app.
 * @example
 * import { defineStage, definePipeline } from "edgepipe";
 * import { z } from "zod";
 * const shout = defineStage({ name: "shout", input: z.object({ text: z.string() }), next: [], handle: ({ text }) => ({ result: text.toUpperCase() }) });
 * export default definePipeline({ name: "hello", stages: [shout] });
 */
export { defineStage, definePipeline, StageError, type StageDef, type StageContext, type StageOutcome, type Emit, type Pipeline, type FlowLimits, type FlowKeyContext, type FlowKeyFn, type FlowNumber, type ScheduleDef, type Schedule } from "./pipeline";
export { parseCron, type Cron } from "./cron";
export { fireSchedules, scheduleRunId, nextTicks, runDueWork, type FireReport } from "./schedules";
export { promoteDue, dueTime } from "./delayed";
export { idempotent, IDEMPOTENCY_HEADER, REPLAYED_HEADER } from "./idempotency";
export { rerunRun, type RerunResult } from "./rerun";
export { resumeRun, expireWaits, EventName, type ResumeResult } from "./wait-for";
export type { WaitFor } from "./pipeline";
export { defineApp, mountApp, createWorker, asEdgeApp, isPipeline, type EdgeApp, type AppStartContext, type WaitUntil } from "./edge-app";
export { createApp, parseServerInfo, type App, type AppBindings } from "./app";
export { createKeys, fnv1a, StageName, RunId, UserId, FeedId, type Keys, type KeyOptions } from "./keys";
export { settingsFor, type Settings } from "./config";
export { redisFromEnv, evalScript, type AppEnv, type RedisClient, type ScriptName } from "./redis";
export { startRuns, startRunsReport, readRun, BackpressureError, type StartRunsOptions, type StartReport } from "./runs";
export { acceptDurably, NotDurableError, type FsyncBarrier } from "./durable";
export { apiError, validate, requireApiToken, toIssues, type ApiIssue, type ErrorCode } from "./http";
export { notifierFromEnv, type ChannelNotifier } from "./notify";
export { readStats, renderPrometheus, type PipelineStats, type StageStats } from "./stats";
export { Envelope, newEnvelope } from "./envelope";
export { readRunOutput, type RunStream, type RunStreamChunk } from "./run-stream";
export { defineMcpTool, McpToolError, type McpTool, type McpToolContext } from "./mcp";
export { cachedTool, CachedToolError, type CachedToolOptions, type CachedToolResult } from "./tools/cache";
export { inSpan, type TraceScope, type ActiveSpan, type SpanAttributes } from "./tracing";
export { takeToken, tryTakeToken, type RateLimit } from "./tools/rate-limit";
export type { RunView, RunStatus } from "./runs";
