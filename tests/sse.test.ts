/**
 * SSE feed events against a real server: live items, disconnect, items that
 * arrive while away, reconnect with Last-Event-ID -> exactly the missed items.
 * Runs both live modes: the Node runtime (pub/sub notifier) and the generic
 * poll that Workers use (app.fetch with no notifier).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { app, pipeline } from "../functions/news/index";
import { randomHex } from "../functions/envelope";
import { settingsFor } from "../functions/config";
import type { AppEnv } from "../functions/redis";
import { loadConfig } from "../worker-host/config";
import { startRuntime, type Runtime } from "../worker-host/runtime";
import { serveHttp, type HttpServer } from "../worker-host/server";
import { eventually, startTestValkey, type TestValkey } from "./helpers/valkey";
import { openSse, type SseEvent } from "./helpers/sse";
import { setInterests } from "../functions/news/users";
import { storeArticle } from "../functions/news/articles";
import { fanOutToBucket } from "../functions/news/fan-out";
import { NewsSettings } from "../functions/news/config";

let valkey: TestValkey;
let runtime: Runtime;
let pollServer: HttpServer;
let pollEnv: AppEnv;

beforeAll(async () => {
  valkey = await startTestValkey();
  runtime = await startRuntime({
    config: loadConfig({ VALKEY_URL: valkey.url, PORT: "0", DEMO: "off", KEY_PREFIX: `sse${randomHex(3)}`, WEB_DIR: "" }, { appSettings: NewsSettings }),
    pipeline,
    app,
    log: () => undefined,
  });
  // The Workers path: same app, no notifier, a short poll interval.
  pollEnv = { REDIS: valkey.redis, KEY_PREFIX: `ssp${randomHex(3)}`, SSE_POLL_MS: "100" };
  pollServer = await serveHttp({ app, env: pollEnv, keys: settingsFor(pollEnv).keys, pipeline, port: 0, hostname: "127.0.0.1" });
});

afterAll(async () => {
  await pollServer?.close();
  await runtime?.close();
  await valkey?.stop();
});

/**
 * Delivers one article the way the pipeline's fanout stage does: the article
 * stored once, then the real fan-out script (LPUSH into every subscriber's
 * feed + PUBLISH on the bucket channel). The user follows "sports".
 */
async function deliver(env: AppEnv, uid: string, title: string): Promise<string> {
  const { keys } = settingsFor(env);
  await setInterests(valkey.redis, keys, uid, ["sports"]);
  const id = Number(await valkey.conn.incr(keys.articleSeq())).toString(36);
  await storeArticle(valkey.redis, keys, { id, runId: `run-${id}`, title, summary: `${title} summary`, topic: "sports", keywords: ["a", "b"] }, "body", 3600);
  const delivered = await fanOutToBucket(valkey.redis, keys, id, "sports", keys.bucketOf(uid), { feedCap: 1000, markerTtlSeconds: 3600 });
  expect(delivered).toBeGreaterThan(0);
  return id;
}

const titles = (events: SseEvent[]) => events.map((e) => JSON.parse(e.data).title as string);

for (const mode of ["notifier", "poll"] as const) {
  describe(`GET /v1/feeds/:uid/events (${mode})`, () => {
    const base = () => (mode === "notifier" ? runtime.url : pollServer.url);
    const env = () => (mode === "notifier" ? runtime.env : pollEnv);

    it("streams new items, and a reconnect with Last-Event-ID gets exactly the missed ones", async () => {
      const uid = `u${randomHex(4)}`;
      await deliver(env(), uid, "before connect");

      const first = await openSse(`${base()}/v1/feeds/${uid}/events`);
      expect(first.status).toBe(200);
      expect(first.headers.get("content-type")).toContain("text/event-stream");
      await eventuallyHasId(first);
      const liveIds = [await deliver(env(), uid, "live 1"), await deliver(env(), uid, "live 2")];
      const live = await first.next(2);
      expect(titles(live)).toEqual(["live 1", "live 2"]);
      expect(live.map((e) => e.id)).toEqual(liveIds);
      const item = JSON.parse(live[0].data);
      expect(item).toMatchObject({ id: liveIds[0], runId: `run-${liveIds[0]}`, title: "live 1", summary: "live 1 summary", topic: "sports", keywords: ["a", "b"] });
      const lastSeen = first.lastEventId();
      expect(lastSeen).toBe(liveIds[1]);
      first.close();

      const missed = [await deliver(env(), uid, "away 1"), await deliver(env(), uid, "away 2"), await deliver(env(), uid, "away 3")];
      const second = await openSse(`${base()}/v1/feeds/${uid}/events`, { lastEventId: lastSeen });
      const replay = await second.next(3);
      expect(replay.map((e) => e.id)).toEqual(missed);
      const after = await deliver(env(), uid, "after reconnect");
      const next = await second.next(1);
      expect(next.map((e) => e.id)).toEqual([after]);
      const numsub = async () => {
        const { keys } = settingsFor(env());
        const [, n] = (await valkey.conn.call("PUBSUB", "NUMSUB", keys.feedChannel(keys.bucketOf(uid)))) as [string, number];
        return Number(n);
      };
      if (mode === "notifier") expect(await numsub()).toBe(1);
      second.close();
      // Nothing seen twice, nothing from before the first connect.
      const all = [...first.seen, ...second.seen].filter((e) => e.event === "item").map((e) => e.id);
      expect(all).toEqual([...liveIds, ...missed, after]);
      if (mode === "notifier") {
        // Both streams ended server-side on disconnect: the bucket channel has no subscriber left.
        await eventually(async () => (await numsub()) === 0);
      }
    });

    it("a client that connected to an empty feed and reconnects gets everything that arrived", async () => {
      const uid = `u${randomHex(4)}`;
      const first = await openSse(`${base()}/v1/feeds/${uid}/events`);
      const cursor = await eventuallyHasId(first);
      first.close();
      const missed = [await deliver(env(), uid, "x1"), await deliver(env(), uid, "x2")];
      const second = await openSse(`${base()}/v1/feeds/${uid}/events`, { lastEventId: cursor });
      expect((await second.next(2)).map((e) => e.id)).toEqual(missed);
      second.close();
    });
  });
}

describe("SSE validation", () => {
  it("answers 400 with issues for a bad uid or Last-Event-ID", async () => {
    const badUid = await fetch(`${runtime.url}/v1/feeds/${encodeURIComponent("no:such")}/events`);
    expect(badUid.status).toBe(400);
    const body = await badUid.json();
    expect(body.error.code).toBe("validation_failed");
    expect(body.error.issues[0].path).toBe("uid");
    const badId = await fetch(`${runtime.url}/v1/feeds/alice/events`, { headers: { "last-event-id": "NOT AN ID" } });
    expect(badId.status).toBe(400);
    expect((await badId.json()).error.issues[0].path).toBe("last-event-id");
  });

  it("ends a stream after SSE_MAX_SECONDS, so EventSource reconnects (Workers request budget)", async () => {
    const shortEnv: AppEnv = { ...pollEnv, SSE_MAX_SECONDS: "1", SSE_POLL_MS: "100" };
    const res = await app.request("/v1/feeds/alice/events", {}, shortEnv);
    expect(res.status).toBe(200);
    const text = await res.text(); // resolves only when the server ends the stream
    expect(text).toMatch(/^retry: \d+$/m);
    expect(text).toMatch(/^id: [0-9a-z]+$/m);
  });

  it("tells EventSource how long to wait before reconnecting", async () => {
    const res = await fetch(`${runtime.url}/v1/feeds/alice/events`);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const { value } = await reader.read();
    expect(value).toMatch(/^retry: \d+$/m);
    await reader.cancel();
  });
});

/** Waits for the id-only event that opens a fresh stream (the cursor). */
async function eventuallyHasId(conn: { lastEventId(): string | undefined }): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const id = conn.lastEventId();
    if (id) return id;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("stream sent no initial id");
}
