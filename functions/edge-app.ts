/**
 * An app: a pipeline plus what comes with it (extra routes, its own settings,
 * a cron handler, work beside the Node host such as demo data). The host runs
 * any module whose default export is an app (`defineApp`) or a bare pipeline
 * (`definePipeline`); the framework never imports a particular app.
 */
import { Hono, type Schema } from "hono";
import type { z } from "zod";
import { createApp, type AppBindings } from "./app";
import { answerAfterBody } from "./body-limit";
import { settingsFor } from "./config";
import type { Pipeline } from "./pipeline";
import type { McpTool } from "./mcp";
import { redisFromEnv, type AppEnv } from "./redis";
import { runDueWork } from "./schedules";

/** What an app's `start` gets from the Node host (`npm start`, `npm run dev`). */
export interface AppStartContext {
  /** The app's env on the Node side: a Valkey client (`REDIS`), the key settings and the app's settings as given. */
  env: AppEnv;
  /** Base URL of the public API. */
  url: string;
  /** False under `DEMO=off`: seed nothing, trickle nothing in. */
  demo: boolean;
  log: (line: string) => void;
  /** Aborted when the host stops; long-running work ends when it fires. */
  signal: AbortSignal;
}

/** Minimal shape of the Workers ExecutionContext a cron handler needs. */
export interface WaitUntil {
  waitUntil(promise: Promise<unknown>): void;
}

export interface EdgeApp<S extends Schema = {}> {
  /** Short name (`[a-z][a-z0-9-]*`), reported in `/health` and `GET /v1/pipeline` `apps`. */
  name: string;
  pipeline: Pipeline;
  /** Extra HTTP routes, mounted at `/` beside the framework's API. Only mounted apps answer; others 404. */
  routes?: Hono<AppBindings, S, "/">;
  /**
   * The app's own settings, read from the environment. The host validates
   * them at start (a bad value stops it with the list of problems) and hands
   * the variables that are set to the handlers; the host's config knows none of them.
   */
  settings?: z.ZodObject<z.ZodRawShape>;
  /** Workers cron trigger (wrangler.toml `[triggers] crons`). */
  scheduled?: (env: AppEnv, ctx?: WaitUntil) => Promise<unknown>;
  /** Node host only, once the API serves: demo data, polling. Runs in the background until `ctx.signal` aborts. */
  start?: (ctx: AppStartContext) => Promise<void> | void;
  /** The app's own MCP tools, served at `/mcp` beside the framework's (`defineMcpTool`). */
  mcpTools?: readonly McpTool<any>[];
  /** Extra web-client pages printed at start, label -> path (e.g. `{ feed: "/#/feed/u0001" }`). */
  links?: Record<string, string>;
}

const APP_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/**
 * Declares an app around a pipeline.
 * @example
 * export default defineApp({
 *   name: "hello",
 *   pipeline: definePipeline({ name: "hello", stages: [greet] }),
 *   routes: new Hono<AppBindings>().get("/v1/hello", (c) => c.json({ hello: "world" })),
 * });
 */
export function defineApp<S extends Schema = {}>(def: EdgeApp<S>): EdgeApp<S> {
  if (!APP_NAME.test(def.name)) throw new Error(`app name ${JSON.stringify(def.name)} must be 1-32 chars of a-z, 0-9 and '-', starting with a letter`);
  if (!isPipeline(def.pipeline)) throw new Error(`app ${def.name}: pipeline must come from definePipeline`);
  return def;
}

/** True for what `definePipeline` returns. */
export function isPipeline(value: unknown): value is Pipeline {
  const p = value as Pipeline | null;
  return typeof p === "object" && p !== null && typeof p.name === "string" && typeof p.entry === "string" && p.stages instanceof Map;
}

function isEdgeApp(value: unknown): value is EdgeApp {
  const a = value as EdgeApp | null;
  return typeof a === "object" && a !== null && typeof a.name === "string" && isPipeline(a.pipeline);
}

/**
 * The app a module's default export stands for: an app as is, a bare pipeline
 * as an app without routes. Throws naming `from` for anything else.
 */
export function asEdgeApp(value: unknown, from = "the module"): EdgeApp {
  if (isEdgeApp(value)) return value;
  if (isPipeline(value)) return { name: value.name, pipeline: value };
  throw new Error(`${from}: the default export must be a pipeline (definePipeline) or an app (defineApp); got ${value === undefined ? "no default export" : typeof value}`);
}

const mounted = new WeakMap<object, unknown>();

/**
 * The Hono app serving an app: the framework's API and stage routes plus the
 * app's routes. Memoized per app, so the Workers entry, the Node host and
 * tests share one instance.
 * @example
 * const app = mountApp(newsApp);
 * export type AppType = typeof app; // for hc<AppType>
 */
export function mountApp<S extends Schema>(app: EdgeApp<S>) {
  const hit = mounted.get(app);
  if (hit) return hit as ReturnType<typeof build<S>>;
  const built = build(app);
  mounted.set(app, built);
  return built;
}

function build<S extends Schema>(app: EdgeApp<S>) {
  const routes = app.routes ?? new Hono<AppBindings, S, "/">();
  // A bare pipeline mounts no app: its API is the framework's alone.
  return createApp({ pipeline: app.pipeline, apps: app.routes ? [app.name] : [], mcpTools: app.mcpTools }).route("/", routes);
}

const READ_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * A deployed Worker with no API_TOKEN would take writes from anyone: it
 * refuses them (403) unless ALLOW_OPEN_WRITES=on says that is intended.
 * Stage calls are not writes of the public API (they are signed).
 */
function refuseOpenWrites(request: Request, env: AppEnv | undefined): Response | undefined {
  if (READ_METHODS.has(request.method) || env?.API_TOKEN) return undefined;
  if (new URL(request.url).pathname.startsWith("/stages/")) return undefined;
  if (settingsFor(env).settings.ALLOW_OPEN_WRITES === "on") return undefined;
  return Response.json(
    { error: { code: "writes_disabled", message: "this Worker has no API_TOKEN, so it refuses writes: set one (wrangler secret put API_TOKEN) and send Authorization: Bearer <token>, or set ALLOW_OPEN_WRITES=on to accept unauthenticated writes" } },
    { status: 403 },
  );
}

/**
 * The Workers module (`export default createWorker(app)`): `fetch` serves
 * `mountApp(app)`, `scheduled` runs the app's cron handler, if any.
 * @example
 * // worker.ts, named by wrangler.toml `main`
 * import { createWorker } from "edgepipe";
 * import app from "./pipeline";
 * export default createWorker(app);
 */
export function createWorker(appOrPipeline: EdgeApp<any> | Pipeline) {
  const app = asEdgeApp(appOrPipeline);
  const http = mountApp(app);
  return {
    fetch(request: Request, env: AppEnv, ctx?: unknown): Response | Promise<Response> {
      // Every answer ends only after the rest of an unread request body arrived (workerd would reset the connection under the client).
      const refused = refuseOpenWrites(request, env);
      if (refused) return answerAfterBody(request, refused);
      return Promise.resolve(http.fetch(request, env, ctx as never)).then((res) => answerAfterBody(request, res));
    },
    async scheduled(event: unknown, env: AppEnv, ctx?: WaitUntil): Promise<void> {
      const at = typeof (event as { scheduledTime?: unknown })?.scheduledTime === "number" ? (event as { scheduledTime: number }).scheduledTime : Date.now();
      // The framework's due work (delayed runs, schedule ticks) beside the app's own cron handler.
      const work = Promise.all([runDueWork(env, app.pipeline, redisFromEnv(env), Math.max(at, Date.now())), app.scheduled?.(env, ctx)]);
      ctx?.waitUntil(work);
      await work;
    },
  };
}
