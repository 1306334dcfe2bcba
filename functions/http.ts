/**
 * HTTP helpers shared by every route: the JSON error shape of the public
 * contract, zod validation that answers 4xx with the issue list, and the
 * bearer-token guard for write endpoints.
 */
import type { Context, MiddlewareHandler } from "hono";
import { validator } from "hono/validator";
import type { z } from "zod";
import type { AppEnv } from "./redis";

export type ErrorCode =
  | "bad_request"
  | "invalid_json"
  | "validation_failed"
  | "unauthorized"
  | "not_found"
  | "method_not_allowed"
  | "payload_too_large"
  | "conflict"
  | "idempotency_key_reused"
  | "idempotency_key_in_flight"
  | "too_many_streams"
  | "backpressure"
  | "replayed"
  | "not_durable"
  | "writes_disabled"
  | "unavailable"
  | "internal";

export interface ApiIssue {
  path: string;
  message: string;
  code?: string;
}

/** Builds `{ error: { code, message, issues? } }` with the given status. */
export function apiError(c: Context, status: 400 | 401 | 403 | 404 | 405 | 409 | 413 | 422 | 429 | 500 | 503, code: ErrorCode, message: string, issues?: ApiIssue[]) {
  return c.json({ error: { code, message, ...(issues ? { issues } : {}) } }, status);
}

/** Flattens zod issues into `{ path, message, code }` with dotted paths. */
export function toIssues(error: z.ZodError): ApiIssue[] {
  return error.issues.map((i) => ({ path: i.path.map(String).join("."), message: i.message, code: i.code }));
}

/**
 * What a typed client (`hc<AppType>`) sends for a validated target: the
 * schema's input type for JSON bodies; strings for query, path and header
 * values, because those are parsed (coerced, transformed) on the server.
 */
export type WireInput<T extends z.ZodType, Target> = Target extends "json"
  ? z.input<T>
  : { [K in keyof z.input<T>]: undefined extends z.input<T>[K] ? string | undefined : string };

/**
 * Validates one part of the request with a zod schema; on failure answers
 * 400 (413 for a too-large array at the top level when `tooLargePath` matches).
 * @example
 * app.get("/v1/feeds/:uid", validate("param", z.object({ uid: UserId })), (c) => c.req.valid("param").uid)
 */
export function validate<T extends z.ZodType, Target extends "json" | "query" | "param" | "header">(
  target: Target,
  schema: T,
  { tooLargePath }: { tooLargePath?: string } = {},
): MiddlewareHandler<any, string, { in: { [K in Target]: WireInput<T, K> }; out: { [K in Target]: z.output<T> } }, ReturnType<typeof apiError>> {
  // The cast only restates the input type for clients (see WireInput); the runtime is hono's validator.
  return validator(target, async (value, c) => {
    const parsed = await schema.safeParseAsync(value);
    if (parsed.success) return parsed.data as z.infer<T>;
    const issues = toIssues(parsed.error);
    const tooBig = tooLargePath !== undefined && parsed.error.issues.some((i) => i.code === "too_big" && i.path.map(String).join(".") === tooLargePath);
    return apiError(c, tooBig ? 413 : 400, "validation_failed", `invalid ${target}: ${issues[0]?.path || "(root)"}: ${issues[0]?.message}`, issues);
  }) as unknown as MiddlewareHandler<any, string, { in: { [K in Target]: WireInput<T, K> }; out: { [K in Target]: z.output<T> } }, ReturnType<typeof apiError>>;
}

/** Write endpoints: when API_TOKEN is set, require `Authorization: Bearer <token>`. */
export function requireApiToken(): MiddlewareHandler<{ Bindings: AppEnv }> {
  return async function requireApiTokenMiddleware(c, next) {
    const token = c.env?.API_TOKEN;
    if (token) {
      const got = c.req.header("authorization") ?? "";
      if (!timingSafeEqual(got, `Bearer ${token}`)) {
        return apiError(c, 401, "unauthorized", "this endpoint needs Authorization: Bearer <API_TOKEN>");
      }
    }
    await next();
  };
}

/** Constant-time string comparison (length leaks, content does not). */
export function timingSafeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
