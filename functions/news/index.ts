/**
 * The news app (`edgepipe/news`): the reference pipeline (ingest -> fetcher
 * -> classifier -> enricher -> fanout -> per-user feeds) with its API (ingest,
 * users, feeds, topics, live feed events), its settings, the RSS cron
 * trigger, and the demo it runs beside the Node host. It stands on the
 * framework like any user's app; `npm start` runs it when no other pipeline
 * is named (package.json `edgepipe.pipeline`).
 */
import { defineApp, mountApp, type WaitUntil } from "../edge-app";
import type { AppEnv } from "../redis";
import { NewsSettings } from "./config";
import { feedEventsRoutes } from "./feed-events";
import { newsLinks, startNewsHostTasks } from "./host-tasks";
import { scheduledIngest } from "./ingest";
import { newsPipeline } from "./pipeline";
import { newsMcpTools } from "./mcp-tools";
import { newsRoutes } from "./routes";

/** The news app: what `edgepipe start --pipeline edgepipe/news` (or the repo's `npm start`) runs. */
export const newsApp = defineApp({
  name: "news",
  pipeline: newsPipeline,
  // Chained, so `hc<AppType>` sees every route (including the SSE feed events).
  routes: newsRoutes.route("/v1/feeds", feedEventsRoutes()),
  settings: NewsSettings,
  scheduled: scheduledIngest,
  start: startNewsHostTasks,
  links: newsLinks,
  mcpTools: newsMcpTools,
});
export default newsApp;

export const pipeline = newsPipeline;
/** The Hono app serving the news app (framework API + news routes). */
export const app = mountApp(newsApp);
export type AppType = typeof app;

/** Cron trigger (wrangler.toml `[triggers] crons`): ingests the RSS/Atom feeds in FEED_URLS. */
export async function scheduled(_event: unknown, env: AppEnv, ctx?: WaitUntil): Promise<void> {
  const work = scheduledIngest(env);
  ctx?.waitUntil(work);
  await work;
}

export { newsPipeline, newsRoutes, NewsSettings };
export { newsSettings, feedUrlsOf } from "./config";
export { ingestArticles, ingestFeedUrls } from "./ingest";
export { seedDemoUsers, setInterests, getUser, demoUid, type UserProfile } from "./users";
export { generateDemoArticles } from "./demo-feed";
export { articlesFromCsv, articlesFromJsonl } from "./csv";
export { ArticleInput, type FeedItem } from "./schema";
