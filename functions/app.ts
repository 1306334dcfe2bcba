/**
 * The Hono app: stage handlers (`POST /stages/:name`), health, stats, runs,
 * the pipeline description and dead letters. Runtime-neutral: Workers use its
 * default export's `fetch`, the Node worker-host calls `app.fetch(request, env)`
 * in-process.
 */
import { PRIORITIES } from "./envelope";
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { z } from "zod";
import { settingsFor } from "./config";
import { listDeadLetters, redriveDeadLetters, redriveWithPayload } from "./dead-letters";
import { rerunRun } from "./rerun";
import { EventName, resumeRun } from "./wait-for";
import { idempotent } from "./idempotency";
import { newRunId } from "./envelope";
import { dueTime, StartRunsBody } from "./delayed";
import { apiError, requireApiToken, validate } from "./http";
import { RunId, StageName, StreamEntryId } from "./keys";
import { limitApiBodies } from "./body-limit";
import type { Pipeline } from "./pipeline";
import { evalScript, redisFromEnv, type AppEnv } from "./redis";
import { BackpressureError, listRuns, readRun, RUN_STATUSES, startRuns } from "./runs";
import { readStats } from "./stats";
import { stageRoute, TAKES_BATCHES_BY_REFERENCE } from "./stage-route";
import { LUA } from "./lua.generated";
import { apiCors } from "./cors";
import { isUnavailableError, withDeadline } from "./unavailable";
import { acceptDurably, NotDurableError, notDurableMessage } from "./durable";
import { serveRunStream } from "./run-stream";
import { parseTraceparent } from "./envelope";
import { frameworkMcpTools, mcpRoute, type McpTool } from "./mcp";

export type AppBindings = { Bindings: AppEnv };

/** Parses `INFO server` text into server name and version. */
export function parseServerInfo(info: string): { server: "valkey" | "redis"; version: string } {
  const field = (name: string) => new RegExp(`^${name}:(.+)$`, "m").exec(info)?.[1]?.trim();
  const valkey = field("valkey_version");
  if (valkey || field("server_name") === "valkey") return { server: "valkey", version: valkey ?? field("redis_version") ?? "unknown" };
  return { server: "redis", version: field("redis_version") ?? "unknown" };
}

/**
 * Builds the app for a pipeline. `apps` names the apps mounted on it (e.g.
 * `["news"]`), so clients such as the web client know which pages to show
 * (`mountApp` in edge-app.ts passes its app's name); `mcpTools` are the
 * app's tools served at `/mcp` beside the framework's.
 * @example
 * const app = createApp({ pipeline });
 * const res = await app.request("/health", {}, env);
 */
export function createApp({ pipeline, apps = [], mcpTools = [] }: { pipeline: Pipeline; apps?: readonly string[]; mcpTools?: readonly McpTool[] }) {
  const stageNames = [...pipeline.stages.keys()] as [string, ...string[]];
  const pipelineView = {
    name: pipeline.name,
    entry: pipeline.entry,
    ...(pipeline.triggerStep ? { triggerStep: pipeline.triggerStep } : {}),
    stages: [...pipeline.stages.values()].map((s) => ({ name: s.name, next: [...s.next] })),
    apps: [...apps],
  };
  const mcp = mcpRoute({ pipeline, tools: [...frameworkMcpTools(pipeline), ...mcpTools], name: `edgepipe-${pipeline.name}` });
  const KnownStage = StageName.refine((s) => pipeline.stages.has(s), { message: `must be one of: ${stageNames.join(", ")}` });

  const app = new Hono<AppBindings>()
    .use("/v1/*", apiCors())
    .use("*", limitApiBodies())
    .get("/health", async (c) => {
      try {
        const redis = redisFromEnv(c.env ?? {});
        const shas = Object.values(LUA).map((s) => s.sha);
        // Bounded: an unreachable or frozen server answers 503 within a second, not when the client gives up.
        const [info, exists] = await withDeadline(
          Promise.all([evalScript(redis, "serverInfo", [], []).then(String), redis.scriptExists(...(shas as [string, ...string[]])) as Promise<number[]>]),
          700,
          "health check",
        );
        const { server, version } = parseServerInfo(info);
        return c.json({
          ok: true,
          valkey: { reachable: true, server, version },
          scripts: { total: shas.length, loaded: exists.filter((e) => Number(e) === 1).length, fallback: "EVAL on NOSCRIPT" },
          pipeline: { name: pipeline.name, stages: stageNames },
        });
      } catch (err) {
        return c.json({ ok: false, valkey: { reachable: false, server: null, version: null, error: (err as Error).message } }, 503);
      }
    })
    .get("/v1/stats", async (c) => {
      const { keys } = settingsFor(c.env);
      return c.json(await readStats(redisFromEnv(c.env ?? {}), keys, pipeline));
    })
    .post(
      "/v1/runs",
      requireApiToken(),
      validate("json", StartRunsBody(KnownStage, PRIORITIES), { tooLargePath: "payloads" }),
      async (c) => {
        const body = c.req.valid("json");
        const { stage, payloads, priority } = body;
        const { keys, settings } = settingsFor(c.env);
        const runAt = dueTime(body);
        return idempotent(c, "runs", body, payloads.map(() => newRunId()), async (runIds) => {
          await startRuns(redisFromEnv(c.env ?? {}), payloads, {
            keys,
            pipeline,
            stage,
            priority,
            runIds,
            runAt,
            onceWithinMs: settings.CHECKPOINT_TTL_SECONDS * 1000,
            ttlSeconds: settings.CHECKPOINT_TTL_SECONDS,
            recentRunsMax: settings.RECENT_RUNS_MAX,
            maxBacklog: settings.BACKPRESSURE_MAX_LAG,
            trace: parseTraceparent(c.req.header("traceparent")),
          });
          await acceptDurably(c.env, { on: settings.DURABLE_ACCEPT, timeoutMs: settings.DURABLE_ACCEPT_TIMEOUT_MS }, runIds);
          return { accepted: runIds.length, runIds, ...(runAt ? { runAt: new Date(runAt).toISOString() } : {}) };
        });
      },
    )
    .get("/v1/runs", validate("query", z.object({ limit: z.coerce.number().int().min(1).max(100).default(20), status: z.enum(RUN_STATUSES).optional() })), async (c) => {
      const { keys } = settingsFor(c.env);
      return c.json(await listRuns(redisFromEnv(c.env ?? {}), keys, c.req.valid("query")));
    })
    .get("/v1/pipeline", (c) => c.json(pipelineView))
    .get("/v1/runs/:runId", validate("param", z.object({ runId: RunId })), async (c) => {
      const { runId } = c.req.valid("param");
      const { keys } = settingsFor(c.env);
      const run = await readRun(redisFromEnv(c.env ?? {}), keys, pipeline, runId);
      if (!run) return apiError(c, 404, "not_found", `no run ${runId} (unknown or expired)`);
      return c.json(run);
    })
    .get(
      "/v1/runs/:runId/stream",
      validate("param", z.object({ runId: RunId })),
      validate("header", z.object({ "last-event-id": z.string().regex(/^\d{1,20}-\d{1,20}$/, "Last-Event-ID must be an id this stream sent").optional() })),
      (c) => serveRunStream(c, redisFromEnv(c.env ?? {}), c.req.valid("param").runId, c.req.valid("header")["last-event-id"]),
    )
    .get(
      "/v1/dead-letters",
      validate("query", z.object({ stage: KnownStage.optional(), limit: z.coerce.number().int().min(1).max(1000).default(50) })),
      async (c) => {
        const { stage, limit } = c.req.valid("query");
        const { keys } = settingsFor(c.env);
        const items = await listDeadLetters(redisFromEnv(c.env ?? {}), keys, pipeline, { stage, limit });
        return c.json({ items });
      },
    )
    .post(
      "/v1/dead-letters/redrive",
      requireApiToken(),
      validate(
        "json",
        z
          .object({ stage: KnownStage, ids: z.array(StreamEntryId).min(1).max(1000).optional(), payload: z.unknown().optional() })
          .refine((b) => !Object.hasOwn(b, "payload") || b.ids?.length === 1, { message: "a redrive with an edited payload names exactly one dead letter in ids", path: ["ids"] }),
      ),
      async (c) => {
        const body = c.req.valid("json");
        const { stage, ids } = body;
        const { keys } = settingsFor(c.env);
        const redis = redisFromEnv(c.env ?? {});
        if (Object.hasOwn(body, "payload")) {
          try {
            const redriven = await redriveWithPayload(redis, keys, { stage, id: ids![0], payload: body.payload });
            if (redriven === 0) return apiError(c, 404, "not_found", `no dead letter ${ids![0]} of stage ${stage}`);
            return c.json({ redriven, edited: true });
          } catch (err) {
            return apiError(c, 409, "conflict", (err as Error).message);
          }
        }
        const redriven = await redriveDeadLetters(redis, keys, { stage, ids });
        return c.json({ redriven });
      },
    )
    .post("/mcp", mcp)
    .get("/mcp", mcp)
    .delete("/mcp", mcp)
    .post(
      "/v1/runs/:runId/events/:event",
      requireApiToken(),
      validate("param", z.object({ runId: RunId, event: EventName })),
      validate("json", z.object({ data: z.unknown().optional() })),
      async (c) => {
        const { runId, event } = c.req.valid("param");
        const { data } = c.req.valid("json");
        const { keys } = settingsFor(c.env);
        const result = await resumeRun(redisFromEnv(c.env ?? {}), keys, { runId, event, data });
        if (!result.ok) return result.code === "not_found" ? apiError(c, 404, "not_found", result.message) : apiError(c, 409, "conflict", result.message);
        return c.json({ runId, event, resumed: true, to: result.to }, 202);
      },
    )
    .post(
      "/v1/runs/:runId/rerun",
      requireApiToken(),
      validate("param", z.object({ runId: RunId })),
      validate("json", z.object({ fromStep: KnownStage, payload: z.unknown().optional() })),
      async (c) => {
        const { runId } = c.req.valid("param");
        const body = c.req.valid("json");
        const { keys, settings } = settingsFor(c.env);
        const result = await rerunRun(redisFromEnv(c.env ?? {}), keys, pipeline, { runId, fromStep: body.fromStep, payload: body.payload, hasPayload: Object.hasOwn(body, "payload"), ttlSeconds: settings.CHECKPOINT_TTL_SECONDS });
        if (!result.ok) return result.code === "not_found" ? apiError(c, 404, "not_found", result.message) : apiError(c, 409, "conflict", result.message);
        const { ok: _ok, ...answer } = result;
        return c.json(answer, 202);
      },
    )
    .post("/stages/:name", stageRoute(pipeline));

  app.notFound((c) => apiError(c, 404, "not_found", `no route for ${c.req.method} ${new URL(c.req.url).pathname}`));
  app.onError((err, c) => {
    if (err instanceof HTTPException && err.status < 500) {
      const code = /JSON/i.test(err.message) ? "invalid_json" : "bad_request";
      return apiError(c, err.status as 400, code, err.message);
    }
    // A stage is behind: nothing of the batch was written; the producer waits and sends it again.
    if (err instanceof BackpressureError) {
      c.header("Retry-After", String(err.retryAfterSeconds));
      return c.json({ error: { code: "backpressure", message: err.message, stage: err.stage, backlog: err.backlog, limit: err.limit } }, 429);
    }
    // DURABLE_ACCEPT=on and the fsync was not confirmed: the runs exist in memory, say so.
    if (err instanceof NotDurableError) {
      return c.json({ error: { code: "not_durable", message: notDurableMessage(err), runIds: err.runIds } }, 503);
    }
    // Valkey unreachable: a clear 503 to retry later, not a 500 with the client's internals.
    if (isUnavailableError(err)) return apiError(c, 503, "unavailable", "the data store is unreachable right now; retry shortly");
    // Details (script SHAs, lines, stacks) go to the log only, under a reference the client can quote.
    const ref = crypto.randomUUID().slice(0, 8);
    console.error(`[app] ${c.req.method} ${new URL(c.req.url).pathname} (ref ${ref}):`, err);
    return apiError(c, 500, "internal", `internal error (ref ${ref}); the server log has the details`);
  });
  Object.defineProperty(app, TAKES_BATCHES_BY_REFERENCE, { value: true });
  return app;
}

export type App = ReturnType<typeof createApp>;
