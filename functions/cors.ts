/**
 * CORS for the public API. Reads (GET/HEAD) are public data, so any origin may
 * read them by default; writes (POST/PUT/PATCH/DELETE) are only allowed from
 * the origins listed in CORS_ORIGINS (none by default), because a wildcard
 * would let any page drive the pipeline from a visitor's browser.
 *
 * Config (env): CORS_ORIGINS="https://a.example,https://b.example" (or "*" to
 * open writes too), CORS_PUBLIC_READS=off to restrict reads to CORS_ORIGINS.
 */
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "./redis";

const READ_METHODS = new Set(["GET", "HEAD"]);
const ALLOW_HEADERS = "Content-Type, Authorization, Last-Event-ID";

interface CorsPolicy {
  origins: Set<string>;
  anyOriginWrites: boolean;
  publicReads: boolean;
}

const policies = new WeakMap<object, CorsPolicy>();

/** Parses the CORS settings of an env (memoized per env object). */
export function corsPolicy(env: AppEnv | undefined): CorsPolicy {
  const source = env ?? {};
  const hit = policies.get(source);
  if (hit) return hit;
  const list = String(source.CORS_ORIGINS ?? "")
    .split(",")
    .map((o) => o.trim().replace(/\/+$/, ""))
    .filter(Boolean);
  const policy: CorsPolicy = {
    origins: new Set(list.filter((o) => o !== "*")),
    anyOriginWrites: list.includes("*"),
    publicReads: !/^(off|false|0)$/i.test(String(source.CORS_PUBLIC_READS ?? "on")),
  };
  policies.set(source, policy);
  return policy;
}

/** The Access-Control-Allow-Origin value for `origin` doing `method`, or null to deny. */
export function allowedOrigin(policy: CorsPolicy, origin: string, method: string): string | null {
  if (policy.origins.has(origin)) return origin;
  if (READ_METHODS.has(method)) return policy.publicReads ? "*" : null;
  return policy.anyOriginWrites ? "*" : null;
}

/**
 * CORS middleware with separate read and write policies (see module doc).
 * Denied cross-origin requests get no CORS headers, so the browser blocks them.
 */
export function apiCors(): MiddlewareHandler<{ Bindings: AppEnv }> {
  return async function apiCorsMiddleware(c, next) {
    const origin = c.req.header("origin");
    if (!origin) return next();
    const policy = corsPolicy(c.env);
    if (c.req.method === "OPTIONS") {
      const method = (c.req.header("access-control-request-method") ?? "GET").toUpperCase();
      const allow = allowedOrigin(policy, origin, method);
      const headers = new Headers({ Vary: "Origin" });
      if (allow) {
        headers.set("Access-Control-Allow-Origin", allow);
        headers.set("Access-Control-Allow-Methods", allow === "*" && READ_METHODS.has(method) && !policy.anyOriginWrites && !policy.origins.has(origin) ? "GET, HEAD" : "GET, HEAD, POST, PUT, PATCH, DELETE");
        headers.set("Access-Control-Allow-Headers", ALLOW_HEADERS);
        headers.set("Access-Control-Max-Age", "600");
      }
      return new Response(null, { status: 204, headers });
    }
    await next();
    const allow = allowedOrigin(policy, origin, c.req.method);
    c.res.headers.append("Vary", "Origin");
    if (allow) c.res.headers.set("Access-Control-Allow-Origin", allow);
  };
}
