/**
 * The web client's only door to the server: a typed Hono RPC client
 * (`hc<AppType>`), so route paths, params, JSON bodies and answers are checked
 * against functions/ at compile time. Errors become `ApiError` with the
 * server's `{ error: { code, message, issues } }`.
 */
import { hc, type ClientResponse, type parseResponse } from "hono/client";
import type { AppType } from "../../functions/news/index";
import type { FeedItem } from "../../functions/news/schema";

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

/** URL of a run's streamed output (SSE; the browser resumes with Last-Event-ID on its own). */
export function runStreamUrl(runId: string): string {
  const url = client.v1.runs[":runId"].stream.$url({ param: { runId } });
  return url.pathname + url.search;
}

// ---- calls used by the pages -------------------------------------------------

export type Run = Awaited<ReturnType<typeof getRun>>;
export type Stats = Awaited<ReturnType<typeof getStats>>;
export type DeadLetter = Awaited<ReturnType<typeof getDeadLetters>>["items"][number];

export type RunSummary = Awaited<ReturnType<typeof getRuns>>["items"][number];
export type RunStatus = Run["status"];
export type PipelineInfo = Awaited<ReturnType<typeof getPipeline>>;
export type DemoUsers = Awaited<ReturnType<typeof getDemoUsers>>;

/** Recent runs, newest first (optionally of one status). */
export function getRuns({ limit = 50, status }: { limit?: number; status?: RunStatus } = {}) {
  return json(client.v1.runs.$get({ query: { limit: String(limit), ...(status ? { status } : {}) } }));
}

/** The pipeline's stages and the apps mounted on the server (decides which pages exist). */
export function getPipeline() {
  return json(client.v1.pipeline.$get());
}

/** The news app's seeded demo users (u0001..). */
export function getDemoUsers(limit = 12) {
  return json(client.v1["demo-users"].$get({ query: { limit: String(limit) } }));
}

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

/** A new attempt of a run from a step, with its checkpointed input or `payload` when given. */
export function rerun(runId: string, fromStep: string, payload?: { value: unknown }) {
  return json(client.v1.runs[":runId"].rerun.$post({ param: { runId }, json: { fromStep, ...(payload ? { payload: payload.value } : {}) } }));
}

/** Delivers an event to a run parked by waitFor. */
export function sendEvent(runId: string, event: string, data: unknown) {
  return json(client.v1.runs[":runId"].events[":event"].$post({ param: { runId, event }, json: { data } }));
}

export type FeedPage = Awaited<ReturnType<typeof getFeed>>;
export type UserProfile = Awaited<ReturnType<typeof getUser>>;
export type TopicSummary = Awaited<ReturnType<typeof getTopics>>["topics"][number];
/** A topic name as the API accepts it (the classifier's fixed list). */
export type Topic = UserProfile["interests"][number];

export function getFeed(uid: string, { limit = 20, cursor }: { limit?: number; cursor?: string | null } = {}) {
  return json(client.v1.feeds[":uid"].$get({ param: { uid }, query: { limit: String(limit), ...(cursor ? { cursor } : {}) } }));
}

export function getUser(uid: string) {
  return json(client.v1.users[":uid"].$get({ param: { uid } }));
}

export function putUser(uid: string, interests: Topic[]) {
  return json(client.v1.users[":uid"].$put({ param: { uid }, json: { interests } }));
}

export function getTopics() {
  return json(client.v1.topics.$get());
}

export function getTopic(topic: Topic, limit = 30) {
  return json(client.v1.topics[":topic"].$get({ param: { topic }, query: { limit: String(limit) } }));
}
