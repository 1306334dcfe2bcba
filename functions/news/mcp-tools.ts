/**
 * The news app's MCP tools (served at `/mcp` beside the framework's): publish
 * articles, set a user's interests, read a feed, list topics. Same schemas and
 * functions as the REST routes, so both answer alike.
 */
import { z } from "zod";
import { UserId } from "../keys";
import { defineMcpTool, McpToolError } from "../mcp";
import { decodeCursor, readFeedPage, readTopics } from "./feeds";
import { ingestArticles } from "./ingest";
import { ArticleInput, Interests } from "./schema";
import { setInterests } from "./users";

/** Most articles one publish_articles call takes (the REST ingest takes 500). */
export const MAX_MCP_ARTICLES = 100;

export const newsMcpTools = [
  defineMcpTool({
    name: "publish_articles",
    description: `Publishes 1-${MAX_MCP_ARTICLES} articles: each starts one run of the news pipeline (fetcher -> classifier -> enricher -> fanout into the feeds of users interested in its topic). Answers the run ids in order.`,
    input: z.object({ articles: z.array(ArticleInput).min(1).max(MAX_MCP_ARTICLES) }),
    call: async ({ articles }, { redis, keys, settings }) => {
      const runIds = await ingestArticles(redis, keys, articles, { ttlSeconds: settings.CHECKPOINT_TTL_SECONDS, recentRunsMax: settings.RECENT_RUNS_MAX });
      return { accepted: runIds.length, runIds };
    },
  }),
  defineMcpTool({
    name: "set_interests",
    description: "Replaces a user's interests (topics from list_topics), creating the user; new articles of those topics reach the user's feed.",
    input: z.object({ uid: UserId, interests: Interests }),
    call: ({ uid, interests }, { redis, keys }) => setInterests(redis, keys, uid, interests),
  }),
  defineMcpTool({
    name: "read_feed",
    description: "A page of a user's feed, newest first (title, summary, topic, keywords, runId); pass nextCursor back as cursor for the next page.",
    readOnly: true,
    input: z.object({ uid: UserId, limit: z.number().int().min(1).max(100).default(20), cursor: z.string().max(200).optional() }),
    call: ({ uid, limit, cursor }, { redis, keys }) => {
      const state = cursor ? decodeCursor(cursor) : undefined;
      if (cursor && !state) throw new McpToolError("cursor: not a cursor this server handed out");
      return readFeedPage(redis, keys, uid, { limit, cursor: state });
    },
  }),
  defineMcpTool({
    name: "list_topics",
    description: "The topics articles are classified into, with their subscriber and article counts.",
    readOnly: true,
    input: z.object({}),
    call: async (_args, { redis, keys }) => ({ topics: await readTopics(redis, keys) }),
  }),
];
