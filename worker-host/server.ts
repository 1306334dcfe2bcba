/**
 * The Node HTTP server of `npm start`: the Hono app (API + stage handlers)
 * plus the worker-host's Prometheus `/metrics`, on one port.
 */
import { serve, type ServerType } from "@hono/node-server";
import type { AppEnv } from "../functions/redis";
import type { Keys } from "../functions/keys";
import type { Pipeline } from "../functions/pipeline";
import { readStats, renderPrometheus } from "../functions/stats";
import { redisFromEnv } from "../functions/redis";
import { serveStatic } from "./static-files";

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
export function serveHttp({ app, env, keys, pipeline, port, hostname, webDir }: { app: FetchApp; env: AppEnv; keys: Keys; pipeline: Pipeline; port: number; hostname: string; webDir?: string }): Promise<HttpServer> {
  const fetch = async (request: Request): Promise<Response> => {
    const { pathname } = new URL(request.url);
    if (pathname === "/metrics" && request.method === "GET") {
      const stats = await readStats(redisFromEnv(env), keys, pipeline);
      return new Response(renderPrometheus(stats), { headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" } });
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
      server = serve({ fetch, port, hostname }, (info) => {
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
    } catch (err) {
      reject(err);
    }
  });
}
