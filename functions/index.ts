/**
 * Workers entry: the Hono app for the news pipeline plus the news API, and
 * the cron trigger that ingests FEED_URLS. `wrangler dev` and `wrangler
 * deploy` use this module; the Node worker-host imports the same app. The
 * small example pipeline stays in functions/example for docs and tests.
 */
import { createApp } from "./app";
import { newsPipeline } from "./news/pipeline";
import { newsRoutes } from "./news/routes";
import { feedEventsRoutes } from "./feed-events";
import { scheduledIngest } from "./news/ingest";
import type { AppEnv } from "./redis";

export const pipeline = newsPipeline;
// Chained, so `hc<AppType>` sees every route (including the SSE feed events).
export const app = createApp({ pipeline, apps: ["news"] }).route("/", newsRoutes).route("/v1/feeds", feedEventsRoutes());
export type AppType = typeof app;

/** Minimal shape of the Workers ExecutionContext the cron handler needs. */
interface WaitUntil {
  waitUntil(promise: Promise<unknown>): void;
}

/** Cron trigger (wrangler.toml `[triggers] crons`): ingests the RSS/Atom feeds in FEED_URLS. */
export async function scheduled(_event: unknown, env: AppEnv, ctx?: WaitUntil): Promise<void> {
  const work = scheduledIngest(env);
  ctx?.waitUntil(work);
  await work;
}

export default { fetch: app.fetch, scheduled };
