/**
 * The Node HTTP server of `npm start`: the Hono app (API + stage handlers)
 * plus the worker-host's Prometheus `/metrics`, on one port. `/health` adds
 * the host's stage loops to the app's answer: 503 naming the stages that
 * make no progress.
 */
import { serve, type ServerType } from "@hono/node-server";
import type { AppEnv } from "../functions/redis";
import type { Keys } from "../functions/keys";
import type { Pipeline } from "../functions/pipeline";
import { readStats, renderPrometheus } from "../functions/stats";
import { redisFromEnv } from "../functions/redis";
import { serveStatic } from "./static-files";
import type { WorkerHost } from "./host";
import { isConnectionError, withTimeout } from "./valkey";

interface FetchApp {
  fetch(request: Request, env?: unknown): Response | Promise<Response>;
}

export interface HttpServer {
  url: string;
  close(): Promise<void>;
}

/**
 * Serves `app` with `env` as its bindings; `/metrics` answers Prometheus text;
 * with `webDir`, other GETs outside the API serve the built web client.
 */
export function serveHttp({ app, env, keys, pipeline, port, hostname, webDir, host }: { app: FetchApp; env: AppEnv; keys: Keys; pipeline: Pipeline; port: number; hostname: string; webDir?: string; host?: WorkerHost }): Promise<HttpServer> {
  const fetch = async (request: Request): Promise<Response> => {
    const { pathname } = new URL(request.url);
    if (pathname === "/health" && request.method === "GET" && host) return healthWithStages(app, request, env, host);
    if (pathname === "/metrics" && request.method === "GET") {
      try {
        const stats = await readStats(redisFromEnv(env), keys, pipeline);
        return new Response(renderPrometheus(stats) + (host ? hostMetrics(host) : ""), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
      } catch (err) {
        if (!isConnectionError(err)) throw err;
        return new Response("# the data store is unreachable right now; retry shortly\n", { status: 503, headers: { "content-type": "text/plain; charset=utf-8" } });
      }
    }
    if (webDir) {
      const file = await serveStatic(request, webDir);
      if (file) return file;
    }
    return app.fetch(request, env);
  };
  return new Promise((resolve, reject) => {
    let server: ServerType;
    try {
      // Headers up to 1 MiB reach the app (which answers them with JSON); beyond, the parser's own
      // refusal is JSON too (clientError below), never a bare status line or a reset.
      server = serve({ fetch, port, hostname, serverOptions: { maxHeaderSize: MAX_HEADER_BYTES } }, (info) => {
        resolve({
          url: `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${info.port}`,
          close: () =>
            new Promise<void>((done) => {
              const s = server as unknown as { close(cb: () => void): void; closeAllConnections?: () => void };
              s.close(() => done());
              s.closeAllConnections?.();
            }),
        });
      });
      server.on("error", reject);
      server.on("clientError", answerClientError);
    } catch (err) {
      reject(err);
    }
  });
}

/** This host's own figures (not in Valkey): dispatches that got no answer from the stage endpoint. */
function hostMetrics(host: WorkerHost): string {
  const stages = host.workers.map((w) => w.health());
  const lines = [
    "# HELP edgepipe_host_dispatch_transport_failures_total Dispatches from this host that got no answer from the stage endpoint (retried in place, no delivery attempt used)",
    "# TYPE edgepipe_host_dispatch_transport_failures_total counter",
    ...stages.map((s) => `edgepipe_host_dispatch_transport_failures_total{stage="${s.stage}"} ${s.transportFailures}`),
    "# HELP edgepipe_host_dispatch_unavailable 1 while this host's dispatches to the stage endpoint get no answer",
    "# TYPE edgepipe_host_dispatch_unavailable gauge",
    ...stages.map((s) => `edgepipe_host_dispatch_unavailable{stage="${s.stage}"} ${s.dispatchUnavailableForMs !== undefined ? 1 : 0}`),
  ];
  return `${lines.join("\n")}\n`;
}

/** Largest request head (request line + headers) the Node server reads. */
export const MAX_HEADER_BYTES = 1024 * 1024;

/** A request the HTTP parser refused (headers too large, malformed): a JSON error as the API gives, then close. */
function answerClientError(err: NodeJS.ErrnoException, socket: import("node:stream").Duplex): void {
  if (!socket.writable || (socket as { _httpMessage?: unknown })._httpMessage) return void socket.destroy();
  const tooLarge = err.code === "HPE_HEADER_OVERFLOW";
  const status = tooLarge ? "431 Request Header Fields Too Large" : "400 Bad Request";
  const body = JSON.stringify({ error: tooLarge ? { code: "payload_too_large", message: `request line and headers are larger than ${MAX_HEADER_BYTES} bytes` } : { code: "bad_request", message: "malformed HTTP request" } });
  socket.end(`HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}

/**
 * The app's /health (Valkey reachable, scripts) plus every stage worker's
 * progress; a stuck stage turns the answer into 503 with `stuck: [{ stage,
 * reason }]`. Both parts run side by side, each bounded, so the answer comes
 * within a second whatever the server does.
 */
async function healthWithStages(app: FetchApp, request: Request, env: AppEnv, host: WorkerHost): Promise<Response> {
  const [appAnswer, stageAnswer] = await Promise.all([
    Promise.resolve(app.fetch(request, env)),
    withTimeout(host.health(), 700, "stage backlog").catch((err: Error) => ({ stages: host.workers.map((w) => w.health()), stuck: [], error: err.message })),
  ]);
  const body = (await appAnswer.json()) as Record<string, unknown>;
  body.stages = stageAnswer.stages;
  let status = appAnswer.status;
  if (stageAnswer.stuck.length > 0) {
    body.ok = false;
    body.stuck = stageAnswer.stuck;
    status = 503;
  }
  return Response.json(body, { status });
}
