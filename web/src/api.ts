/**
 * The web client's only door to the server: a typed Hono RPC client
 * (`hc<AppType>`), so route paths, params, JSON bodies and answers are checked
 * against functions/ at compile time. Errors become `ApiError` with the
 * server's `{ error: { code, message, issues } }`.
 */
import { hc, type ClientResponse, type parseResponse } from "hono/client";
import type { AppType } from "../../functions/index";
import type { FeedItem } from "../../functions/feed-read";

export type { FeedItem };

const TOKEN_KEY = "edgepipe.apiToken";

/** Bearer token for write endpoints (only needed when the server sets API_TOKEN). */
export function apiToken(): string {
  return localStorage.getItem(TOKEN_KEY) ?? "";
}

export function setApiToken(token: string): void {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** The typed client; `headers` is read per request so a new token applies at once. */
export const client = hc<AppType>(location.origin, {
  headers: (): Record<string, string> => (apiToken() ? { Authorization: `Bearer ${apiToken()}` } : {}),
});

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly issues: Array<{ path: string; message: string }> = [],
  ) {
    super(message);
  }
}

/** The success body type of an hc response (what `parseResponse` would return). */
export type OkBody<R extends ClientResponse<unknown>> = Awaited<ReturnType<typeof parseResponse<R>>>;

/** Awaits an hc response; returns its JSON body or throws ApiError with the server's error. */
export async function json<R extends ClientResponse<unknown>>(pending: R | Promise<R>): Promise<OkBody<R>> {
  const res = await pending;
  if (res.ok) return (await res.json()) as OkBody<R>;
  const body = (await res.json().catch(() => null)) as { error?: { code?: string; message?: string; issues?: ApiError["issues"] } } | null;
  throw new ApiError(res.status, body?.error?.code ?? "http_error", body?.error?.message ?? `HTTP ${res.status}`, body?.error?.issues);
}

/** Human text for an error shown in the UI. */
export function errorText(err: unknown): string {
  if (err instanceof ApiError) {
    const issues = err.issues.map((i) => `${i.path || "(root)"}: ${i.message}`).join("; ");
    return `${err.message}${issues && !err.message.includes(issues) ? ` (${issues})` : ""}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/** URL of a user's live feed events (SSE), starting after `after` when given. */
export function feedEventsUrl(uid: string, after?: string): string {
  const url = client.v1.feeds[":uid"].events.$url({ param: { uid }, query: after ? { after } : {} });
  return url.pathname + url.search;
}

// ---- calls used by the pages -------------------------------------------------

export type Run = Awaited<ReturnType<typeof getRun>>;
export type Stats = Awaited<ReturnType<typeof getStats>>;
export type DeadLetter = Awaited<ReturnType<typeof getDeadLetters>>["items"][number];

export function getRun(runId: string) {
  return json(client.v1.runs[":runId"].$get({ param: { runId } }));
}

export function getStats() {
  return json(client.v1.stats.$get());
}

export function getDeadLetters(limit = 20) {
  return json(client.v1["dead-letters"].$get({ query: { limit: String(limit) } }));
}

export function redrive(stage: string) {
  return json(client.v1["dead-letters"].redrive.$post({ json: { stage } }));
}

// Feed, user and topic routes come from the news branch; until they are in
// AppType these go through fetch with the contract's types.
export interface FeedPage {
  items: FeedItem[];
  nextCursor: string | null;
}
export interface UserProfile {
  uid: string;
  interests: string[];
}
export interface TopicSummary {
  name: string;
  subscribers: number;
  articles: number;
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = apiToken() ? { Authorization: `Bearer ${apiToken()}` } : {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return json(res as unknown as ClientResponse<T, 200, "json">) as Promise<T>;
}

export function getFeed(uid: string, { limit = 20, cursor }: { limit?: number; cursor?: string | null } = {}) {
  const q = new URLSearchParams({ limit: String(limit), ...(cursor ? { cursor } : {}) });
  return call<FeedPage>("GET", `/v1/feeds/${encodeURIComponent(uid)}?${q}`);
}

export function getUser(uid: string) {
  return call<UserProfile>("GET", `/v1/users/${encodeURIComponent(uid)}`);
}

export function putUser(uid: string, interests: string[]) {
  return call<UserProfile>("PUT", `/v1/users/${encodeURIComponent(uid)}`, { interests });
}

export function getTopics() {
  return call<{ topics: TopicSummary[] }>("GET", "/v1/topics");
}

export function getTopic(topic: string, limit = 30) {
  return call<{ items: FeedItem[] }>("GET", `/v1/topics/${encodeURIComponent(topic)}?limit=${limit}`);
}
