/**
 * `GET /v1/feeds/:uid/events`: Server-Sent Events of new feed items.
 *
 * Each event is `event: item`, `id: <compact feed id>`, `data: <feed item JSON>`
 * (the same shape as `GET /v1/feeds/:uid` items), sent oldest first. A client
 * that reconnects with `Last-Event-ID` gets exactly the items that entered its
 * feed after that id: the replay walks the feed list (newest first) down to
 * that id, so it follows delivery order, not id order.
 *
 * A page that just loaded the feed passes its newest id as `?after=` so nothing
 * slips between the page load and the stream; Last-Event-ID wins over it.
 *
 * Live mode: a cheap poll of the feed head (`LINDEX feed 0`) every
 * SSE_POLL_MS (default 1000) works on every runtime with the @upstash/redis
 * client. When the host injects a notifier (`env.NOTIFIER`, functions/notify.ts:
 * the Node worker-host does), a message on the bucket's channel wakes the
 * stream at once and polling slows to a safety net.
 *
 * Streams end after SSE_MAX_SECONDS (default 40 when polling, 600 with a
 * notifier); EventSource reconnects with Last-Event-ID and loses nothing. The
 * cap keeps a Workers request under its subrequest budget.
 */
import { Hono } from "hono";
import { streamSSE, type SSEStreamingApi } from "hono/streaming";
import { z } from "zod";
import { settingsFor } from "../config";
import { apiError, validate } from "../http";
import { FeedId, UserId, type Keys } from "../keys";
import { notifierFromEnv } from "../notify";
import { redisFromEnv, type AppEnv, type RedisClient } from "../redis";
import { newsSettings } from "./config";
import { readFeedSince } from "./feeds";
import type { FeedItem } from "./schema";

/**
 * True when a fan-out notification (fan-out.lua publishes
 * "<feedId> <topic> <uid>,<uid>,..." on the bucket's channel) may concern
 * `uid` (unknown formats count as yes).
 */
export function notificationConcerns(message: string, uid: string): boolean {
  const uids = message.split(" ")[2];
  return uids === undefined || uids.split(",").includes(uid);
}

/**
 * Cursor announced when the feed is empty at connect: no real feed id is "0"
 * (the sequence starts at 1), so a reconnect with it replays the whole feed,
 * which is exactly what arrived since.
 */
export const EMPTY_FEED_CURSOR = "0";

/** Reconnect delay suggested to EventSource clients (ms). */
export const SSE_RETRY_MS = 2000;
const HEARTBEAT_MS = 15_000;
/** Most items one replay sends (a client away longer gets the newest ones). */
const MAX_REPLAY = 500;


/** An awaitable pause that `wake()` ends early. */
function wakeableSleep() {
  let wakeUp: (() => void) | undefined;
  let pending = false;
  return {
    wake() {
      pending = true;
      wakeUp?.();
    },
    sleep(ms: number) {
      if (pending) {
        pending = false;
        return Promise.resolve();
      }
      return new Promise<void>((resolve) => {
        const timer = setTimeout(done, ms);
        function done() {
          clearTimeout(timer);
          wakeUp = undefined;
          pending = false;
          resolve();
        }
        wakeUp = done;
      });
    },
  };
}

async function sendItems(stream: SSEStreamingApi, items: FeedItem[]): Promise<void> {
  // readFeedSince answers newest first; clients get them oldest first so the
  // last id they saw is the newest one they have.
  for (let i = items.length - 1; i >= 0; i--) {
    const item = items[i];
    await stream.writeSSE({ event: "item", id: item.id, data: JSON.stringify(item) });
  }
}

async function feedHead(redis: RedisClient, keys: Keys, uid: string): Promise<string | null> {
  const head = await redis.lindex(keys.feed(uid), 0);
  return head === null || head === undefined ? null : String(head);
}

/**
 * Live streams held by this process (a Workers isolate counts its own), in
 * total and per user; past either cap a new stream is refused (503 / 429).
 */
class StreamSlots {
  total = 0;
  private readonly perUser = new Map<string, number>();
  acquire(uid: string, maxTotal: number, maxPerUser: number): "ok" | "process" | "user" {
    if (this.total >= maxTotal) return "process";
    const mine = this.perUser.get(uid) ?? 0;
    if (mine >= maxPerUser) return "user";
    this.total++;
    this.perUser.set(uid, mine + 1);
    return "ok";
  }
  release(uid: string): void {
    this.total = Math.max(0, this.total - 1);
    const mine = (this.perUser.get(uid) ?? 1) - 1;
    if (mine <= 0) this.perUser.delete(uid);
    else this.perUser.set(uid, mine);
  }
}
const openStreams = new StreamSlots();

/** Live feed streams this process holds right now (tests and the fuzz harness read it). */
export function openFeedStreams(): number {
  return openStreams.total;
}

/** The SSE sub-app, mounted at `/v1/feeds`. */
export function feedEventsRoutes() {
  return new Hono<{ Bindings: AppEnv }>().get(
    "/:uid/events",
    validate("param", z.object({ uid: UserId })),
    validate("query", z.object({ after: FeedId.optional() })),
    validate("header", z.object({ "last-event-id": FeedId.optional() })),
    (c) => {
      const { uid } = c.req.valid("param");
      // The browser's Last-Event-ID (set on reconnect) wins over the page's initial ?after=.
      const lastEventId = c.req.valid("header")["last-event-id"] ?? c.req.valid("query").after;
      const env = c.env ?? {};
      const { keys } = settingsFor(env);
      const tuning = newsSettings(env);
      const redis = redisFromEnv(env);
      const notifier = notifierFromEnv(env);
      const pollMs = notifier ? Math.max(tuning.SSE_POLL_MS, 5000) : tuning.SSE_POLL_MS;
      const maxMs = (tuning.SSE_MAX_SECONDS ?? (notifier ? 600 : 40)) * 1000;
      c.header("X-Accel-Buffering", "no");
      // HEAD: the headers a stream would have, and no stream, subscription or poll behind them.
      if (c.req.method === "HEAD") {
        return c.body(null, 200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      }
      const slot = openStreams.acquire(uid, tuning.SSE_MAX_STREAMS, tuning.SSE_MAX_STREAMS_PER_USER);
      if (slot === "process") {
        c.header("Retry-After", "5");
        return apiError(c, 503, "too_many_streams", `this server holds its limit of ${tuning.SSE_MAX_STREAMS} live streams (SSE_MAX_STREAMS); retry shortly`);
      }
      if (slot === "user") {
        c.header("Retry-After", "5");
        return apiError(c, 429, "too_many_streams", `user ${uid} already holds ${tuning.SSE_MAX_STREAMS_PER_USER} live streams (SSE_MAX_STREAMS_PER_USER)`);
      }
      let released = false;
      const release = () => {
        if (!released) openStreams.release(uid);
        released = true;
      };

      return streamSSE(c, async (stream) => {
        const wakeable = wakeableSleep();
        stream.onAbort(() => wakeable.wake());
        const unsubscribe = notifier?.subscribe(keys.feedChannel(keys.bucketOf(uid)), (message) => {
          if (notificationConcerns(message, uid)) wakeable.wake();
        });
        try {
          await stream.write(`retry: ${SSE_RETRY_MS}\n: connected to feed ${uid}\n\n`);
          let cursor: string | null;
          if (lastEventId) {
            const missed = await readFeedSince(redis, keys, uid, lastEventId, { limit: MAX_REPLAY });
            await sendItems(stream, missed);
            cursor = missed[0]?.id ?? lastEventId;
          } else {
            cursor = await feedHead(redis, keys, uid);
            // An id-only event sets the client's Last-Event-ID, so even a
            // reconnect before the first item loses nothing.
            await stream.write(`id: ${cursor ?? EMPTY_FEED_CURSOR}\n\n`);
          }
          const started = Date.now();
          let lastWrite = Date.now();
          while (!stream.aborted && !stream.closed && Date.now() - started < maxMs) {
            await wakeable.sleep(pollMs);
            if (stream.aborted) break;
            const head = await feedHead(redis, keys, uid);
            if (head !== null && head !== cursor) {
              const fresh = await readFeedSince(redis, keys, uid, cursor ?? EMPTY_FEED_CURSOR, { limit: MAX_REPLAY });
              await sendItems(stream, fresh);
              cursor = fresh[0]?.id ?? head;
              lastWrite = Date.now();
            } else if (Date.now() - lastWrite >= HEARTBEAT_MS) {
              await stream.write(": heartbeat\n\n");
              lastWrite = Date.now();
            }
          }
        } finally {
          unsubscribe?.();
          release();
        }
      }, async (err) => {
        release();
        console.error(`[sse] feed ${uid}:`, err);
      });
    },
  );
}
