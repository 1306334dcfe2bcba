/**
 * The MCP server at `/mcp` (Model Context Protocol, Streamable HTTP): an LLM
 * agent lists the tools of the running pipeline and calls them (start a run,
 * read it, wait for it, dead letters, stats, plus the tools an app adds with
 * `defineApp({ mcpTools })`). Stateless: one server and transport per request
 * with JSON answers, so it runs unchanged on Node and on Workers.
 */
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { Context } from "hono";
import { z } from "zod";
import { settingsFor, type Settings } from "./config";
import { listDeadLetters, redriveDeadLetters } from "./dead-letters";
import { apiError, timingSafeEqual, toIssues } from "./http";
import { RunId, StageName, type Keys } from "./keys";
import type { Pipeline } from "./pipeline";
import { redisFromEnv, type AppEnv, type RedisClient } from "./redis";
import { listRuns, readRun, RUN_STATUSES, startRuns } from "./runs";
import { readStats } from "./stats";
import { isUnavailableError } from "./unavailable";

/** What a tool's `call` gets besides its arguments. */
export interface McpToolContext {
  env: AppEnv;
  redis: RedisClient;
  keys: Keys;
  settings: Settings;
  pipeline: Pipeline;
}

/** One MCP tool: its arguments are a zod schema (listed to clients as JSON Schema, checked on every call). */
export interface McpTool<S extends z.ZodType = z.ZodType> {
  /** `[a-z][a-z0-9_]*`, unique across the framework's and the app's tools. */
  name: string;
  description: string;
  input: S;
  /** Read-only tools are also open to `API_READ_TOKEN`; the others need `API_TOKEN`. */
  readOnly?: boolean;
  call: (args: z.output<S>, ctx: McpToolContext) => Promise<unknown> | unknown;
}

/**
 * Declares an MCP tool (hand it to `defineApp({ mcpTools: [...] })`).
 * @example
 * const hello = defineMcpTool({
 *   name: "hello", description: "Greets", readOnly: true,
 *   input: z.object({ name: z.string() }),
 *   call: ({ name }) => ({ greeting: `hello ${name}` }),
 * });
 */
export function defineMcpTool<S extends z.ZodType>(tool: McpTool<S>): McpTool<S> {
  if (!/^[a-z][a-z0-9_]{0,63}$/.test(tool.name)) throw new Error(`MCP tool name ${JSON.stringify(tool.name)} must be 1-64 chars of a-z, 0-9 and '_', starting with a letter`);
  return tool;
}

/** Longest wait `wait_for_run` allows (a tool call should answer well within a client's timeout). */
export const MAX_WAIT_MS = 30_000;

/** The framework's tools for a pipeline. */
export function frameworkMcpTools(pipeline: Pipeline): McpTool[] {
  const stageNames = [...pipeline.stages.keys()] as [string, ...string[]];
  const KnownStage = StageName.pipe(z.enum(stageNames));
  const entry = pipeline.stages.get(pipeline.entry)!;
  return [
    defineMcpTool({
      name: "start_run",
      description: `Starts one run of the ${pipeline.name} pipeline at its entry stage ${pipeline.entry}; answers its runId. Follow it with wait_for_run or get_run.`,
      input: z.object({ payload: entry.input }),
      call: async ({ payload }, { redis, keys, settings }) => {
        const [runId] = await startRuns(redis, [payload], { keys, pipeline, ttlSeconds: settings.CHECKPOINT_TTL_SECONDS, recentRunsMax: settings.RECENT_RUNS_MAX });
        return { runId };
      },
    }),
    defineMcpTool({
      name: "get_run",
      description: "A run's status, its steps (stage, status, result, handler ms) and its activity log.",
      readOnly: true,
      input: z.object({ runId: RunId }),
      call: async ({ runId }, { redis, keys }) => (await readRun(redis, keys, pipeline, runId)) ?? toolError(`no run ${runId} (unknown or expired)`),
    }),
    defineMcpTool({
      name: "wait_for_run",
      description: `Waits until a run is no longer running (at most timeoutMs, ${MAX_WAIT_MS} ms), then answers it with finished: true; finished: false when it still runs.`,
      readOnly: true,
      input: z.object({ runId: RunId, timeoutMs: z.number().int().min(0).max(MAX_WAIT_MS).default(10_000) }),
      call: async ({ runId, timeoutMs }, { redis, keys }) => {
        const deadline = Date.now() + timeoutMs;
        // Polls with a growing pause (few requests on Workers, quick for short runs).
        for (let pause = 50; ; pause = Math.min(pause * 2, 1000)) {
          const run = await readRun(redis, keys, pipeline, runId);
          if (!run) return toolError(`no run ${runId} (unknown or expired)`);
          if (run.status !== "running") return { finished: true, ...run };
          const left = deadline - Date.now();
          if (left <= 0) return { finished: false, ...run };
          await new Promise((resolve) => setTimeout(resolve, Math.min(pause, left)));
        }
      },
    }),
    defineMcpTool({
      name: "list_runs",
      description: "Recent runs, newest first, optionally of one status.",
      readOnly: true,
      input: z.object({ limit: z.number().int().min(1).max(100).default(20), status: z.enum(RUN_STATUSES).optional() }),
      call: ({ limit, status }, { redis, keys }) => listRuns(redis, keys, { limit, status }),
    }),
    defineMcpTool({
      name: "list_dead_letters",
      description: "Dead letters (entries that failed for good), oldest first, with their error and envelope.",
      readOnly: true,
      input: z.object({ stage: KnownStage.optional(), limit: z.number().int().min(1).max(1000).default(50) }),
      call: async ({ stage, limit }, { redis, keys }) => ({ items: await listDeadLetters(redis, keys, pipeline, { stage, limit }) }),
    }),
    defineMcpTool({
      name: "redrive_dead_letters",
      description: "Moves dead letters of a stage back to its input stream (the given ids, or the oldest 1,000 per partition); answers how many.",
      input: z.object({ stage: KnownStage, ids: z.array(z.string().regex(/^\d+-\d+$/, "stream ids look like 1700000000000-0")).min(1).max(1000).optional() }),
      call: async ({ stage, ids }, { redis, keys }) => ({ redriven: await redriveDeadLetters(redis, keys, { stage, ids }) }),
    }),
    defineMcpTool({
      name: "read_stats",
      description: "Per-stage counters (processed, failed, retried, dead-lettered, pending, lag, latency p50/p99), fan-out deliveries and tool-cache hits.",
      readOnly: true,
      input: z.object({}),
      call: (_args, { redis, keys }) => readStats(redis, keys, pipeline),
    }),
  ];
}

/** A tool's answer that reports a failure to the agent (isError), not a protocol error. */
export class McpToolError extends Error {}
function toolError(message: string): never {
  throw new McpToolError(message);
}

type Access = "full" | "read";

/**
 * Who may call: with API_TOKEN set, its bearer token opens every tool and
 * API_READ_TOKEN the read-only ones; without API_TOKEN the server is open
 * (like the REST writes).
 */
function accessOf(env: AppEnv, authorization: string): Access | undefined {
  const full = typeof env.API_TOKEN === "string" && env.API_TOKEN ? env.API_TOKEN : undefined;
  const read = typeof env.API_READ_TOKEN === "string" && env.API_READ_TOKEN ? env.API_READ_TOKEN : undefined;
  if (full && timingSafeEqual(authorization, `Bearer ${full}`)) return "full";
  if (read && timingSafeEqual(authorization, `Bearer ${read}`)) return "read";
  return full || read ? undefined : "full";
}

function describe(tool: McpTool) {
  let inputSchema: Record<string, unknown>;
  try {
    inputSchema = z.toJSONSchema(tool.input, { io: "input", unrepresentable: "any" }) as Record<string, unknown>;
  } catch {
    inputSchema = { type: "object" };
  }
  delete inputSchema.$schema;
  if (inputSchema.type !== "object") inputSchema = { type: "object", ...inputSchema };
  return { name: tool.name, description: tool.description, inputSchema, annotations: { readOnlyHint: tool.readOnly === true } };
}

/**
 * The MCP SDK, loaded on the first /mcp request, not with the app: it is the
 * app's largest import (about half a second of every process start and test
 * file), and most processes never serve MCP.
 */
let sdk:
  | Promise<[typeof import("@modelcontextprotocol/sdk/server/index.js"), typeof import("@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js"), typeof import("@modelcontextprotocol/sdk/types.js")]>
  | undefined;
function loadSdk() {
  sdk ??= Promise.all([import("@modelcontextprotocol/sdk/server/index.js"), import("@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js"), import("@modelcontextprotocol/sdk/types.js")]);
  sdk.catch(() => (sdk = undefined));
  return sdk;
}

function textResult(value: unknown, isError = false): CallToolResult {
  const structured = typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  return { content: [{ type: "text", text: typeof value === "string" ? value : JSON.stringify(value) }], ...(structured && !isError ? { structuredContent: structured } : {}), ...(isError ? { isError: true } : {}) };
}

/**
 * The Hono handler of `POST /mcp` (and of GET/DELETE, which a stateless
 * server answers 405: no session, no server-initiated stream).
 */
export function mcpRoute({ pipeline, tools, name, version = "0.1.0" }: { pipeline: Pipeline; tools: readonly McpTool[]; name: string; version?: string }) {
  const byName = new Map<string, McpTool>();
  for (const tool of tools) {
    if (byName.has(tool.name)) throw new Error(`MCP tool ${tool.name} is defined twice`);
    byName.set(tool.name, tool);
  }
  const listed = [...byName.values()].map((tool) => ({ tool, description: describe(tool) }));

  return async function handleMcp(c: Context<{ Bindings: AppEnv }>) {
    const env = c.env ?? {};
    const access = accessOf(env, c.req.header("authorization") ?? "");
    if (!access) {
      c.header("WWW-Authenticate", 'Bearer realm="mcp"');
      return apiError(c, 401, "unauthorized", "/mcp needs Authorization: Bearer <API_TOKEN> (or <API_READ_TOKEN> for the read-only tools)");
    }
    if (c.req.method !== "POST") {
      c.header("Allow", "POST");
      return apiError(c, 405, "method_not_allowed", "this MCP server is stateless: POST JSON-RPC messages to /mcp (no session to resume or delete)");
    }
    const visible = listed.filter(({ tool }) => access === "full" || tool.readOnly);
    const [{ Server }, { WebStandardStreamableHTTPServerTransport }, { CallToolRequestSchema, ListToolsRequestSchema }] = await loadSdk();
    const server = new Server({ name, version }, { capabilities: { tools: {} } });
    server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: visible.map((t) => t.description) }));
    server.setRequestHandler(CallToolRequestSchema, async (request): Promise<CallToolResult> => {
      const tool = byName.get(request.params.name);
      if (!tool) return textResult(`unknown tool ${request.params.name}; tools/list names the tools`, true);
      if (access !== "full" && !tool.readOnly) return textResult(`tool ${tool.name} changes data: it needs API_TOKEN, not the read-only token`, true);
      const args = tool.input.safeParse(request.params.arguments ?? {});
      if (!args.success) {
        const issues = toIssues(args.error as z.ZodError);
        return textResult(`invalid arguments for ${tool.name}: ${issues.map((i) => `${i.path || "(root)"}: ${i.message}`).join("; ")}`, true);
      }
      try {
        const { settings, keys } = settingsFor(env);
        return textResult(await tool.call(args.data, { env, redis: redisFromEnv(env), keys, settings, pipeline }));
      } catch (err) {
        if (err instanceof McpToolError) return textResult(err.message, true);
        if (isUnavailableError(err)) return textResult("the data store is unreachable right now; retry shortly", true);
        console.error(`[mcp] tool ${tool.name}:`, err);
        return textResult(`tool ${tool.name} failed: ${(err as Error).message}`, true);
      }
    });
    const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true, maxRequestBodySize: settingsFor(env).settings.MAX_BODY_BYTES });
    await server.connect(transport);
    try {
      // The body-limit middleware has read the body already (bounded): hand the transport its text.
      const request = new Request(c.req.raw.url, { method: "POST", headers: c.req.raw.headers, body: await c.req.text() });
      return await transport.handleRequest(request);
    } finally {
      await server.close().catch(() => undefined);
    }
  };
}
