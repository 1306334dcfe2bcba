/**
 * The news API: ingest, users and interests, feeds and topics. Mounted on the
 * core app by functions/index.ts. Every input is validated with zod before it
 * can reach a key.
 */
import { parseTraceparent } from "../envelope";
import { Hono } from "hono";
import { z } from "zod";
import { settingsFor } from "../config";
import { apiError, requireApiToken, validate } from "../http";
import { UserId } from "../keys";
import { redisFromEnv, type AppEnv } from "../redis";
import { decodeCursor, readFeedPage, readTopicItems, readTopics } from "./feeds";
import { acceptDurably } from "../durable";
import { dueTime } from "../delayed";
import { idempotent } from "../idempotency";
import { newsSettings } from "./config";
import { articleRunId, ingestArticles } from "./ingest";
import { IngestRequest, Interests, TopicName } from "./schema";
import { getUser, listDemoUsers, setInterests } from "./users";

const UidParam = z.object({ uid: UserId });

/** The news routes as a Hono app (mount with `app.route("/", newsRoutes)`). */
export const newsRoutes = new Hono<{ Bindings: AppEnv }>()
  .post("/v1/articles", requireApiToken(), validate("json", IngestRequest, { tooLargePath: "articles" }), async (c) => {
    const body = c.req.valid("json");
    const { keys, settings } = settingsFor(c.env);
    const news = newsSettings(c.env);
    const runAt = dueTime(body);
    return idempotent(c, "articles", body, body.articles.map(articleRunId), async (runIds) => {
      await ingestArticles(redisFromEnv(c.env ?? {}), keys, body.articles, {
        runIds,
        runAt,
        ttlSeconds: settings.CHECKPOINT_TTL_SECONDS,
        recentRunsMax: settings.RECENT_RUNS_MAX,
        maxBacklog: settings.BACKPRESSURE_MAX_LAG,
        dedupeWindowMs: news.DEDUPE_TTL_SECONDS * 1000,
        trace: parseTraceparent(c.req.header("traceparent")),
      });
      await acceptDurably(c.env, { on: settings.DURABLE_ACCEPT, timeoutMs: settings.DURABLE_ACCEPT_TIMEOUT_MS }, runIds);
      return { accepted: runIds.length, runIds, ...(runAt ? { runAt: new Date(runAt).toISOString() } : {}) };
    });
  })
  .put("/v1/users/:uid", requireApiToken(), validate("param", UidParam), validate("json", z.object({ interests: Interests })), async (c) => {
    const { uid } = c.req.valid("param");
    const { interests } = c.req.valid("json");
    const { keys } = settingsFor(c.env);
    return c.json(await setInterests(redisFromEnv(c.env ?? {}), keys, uid, interests));
  })
  // The demo users `npm start` seeds (u0001..), so the web home page can offer them.
  .get("/v1/demo-users", validate("query", z.object({ limit: z.coerce.number().int().min(1).max(50).default(12) })), async (c) => {
    const { keys } = settingsFor(c.env);
    return c.json(await listDemoUsers(redisFromEnv(c.env ?? {}), keys, c.req.valid("query")));
  })
  .get("/v1/users/:uid", validate("param", UidParam), async (c) => {
    const { uid } = c.req.valid("param");
    const { keys } = settingsFor(c.env);
    const user = await getUser(redisFromEnv(c.env ?? {}), keys, uid);
    if (!user) return apiError(c, 404, "not_found", `no user ${uid}`);
    return c.json(user);
  })
  .get(
    "/v1/feeds/:uid",
    validate("param", UidParam),
    validate(
      "query",
      z.object({
        limit: z.coerce.number().int().min(1).max(100).default(20),
        cursor: z
          .string()
          .max(200)
          .optional()
          .transform((value, ctx) => {
            if (value === undefined || value === "") return undefined;
            const state = decodeCursor(value);
            if (!state) ctx.addIssue({ code: "custom", message: "not a cursor this API handed out" });
            return state;
          }),
      }),
    ),
    async (c) => {
      const { uid } = c.req.valid("param");
      const { limit, cursor } = c.req.valid("query");
      const { keys } = settingsFor(c.env);
      const redis = redisFromEnv(c.env ?? {});
      const [exists, page] = await Promise.all([redis.exists(keys.user(uid)), readFeedPage(redis, keys, uid, { limit, cursor })]);
      if (exists === 0 && page.items.length === 0) return apiError(c, 404, "not_found", `no user ${uid}`);
      return c.json(page);
    },
  )
  .get("/v1/topics", async (c) => {
    const { keys } = settingsFor(c.env);
    return c.json({ topics: await readTopics(redisFromEnv(c.env ?? {}), keys) });
  })
  .get(
    "/v1/topics/:topic",
    validate("param", z.object({ topic: TopicName })),
    validate("query", z.object({ limit: z.coerce.number().int().min(1).max(100).default(20) })),
    async (c) => {
      const { topic } = c.req.valid("param");
      const { limit } = c.req.valid("query");
      const { keys } = settingsFor(c.env);
      return c.json({ items: await readTopicItems(redisFromEnv(c.env ?? {}), keys, topic, { limit }) });
    },
  );
