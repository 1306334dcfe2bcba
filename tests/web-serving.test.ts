/**
 * Serving the web client from the Node server (content types, cache headers,
 * index.html fallback for app routes but never for API paths), the CORS
 * read/write policy, the typed Hono client from Node, and the first-load
 * size budget of the built client.
 */
import { hc } from "hono/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { app, pipeline, type AppType } from "../functions/news/index";
import { randomHex } from "../functions/envelope";
import { settingsFor } from "../functions/config";
import type { AppEnv } from "../functions/redis";
import { serveHttp, type HttpServer } from "../worker-host/server";
import { ensureWebBuild, WEB_DIST_DIR } from "../worker-host/static-files";
import { measureFirstLoad } from "../worker-host/tools/web-size";
import { startTestValkey, type TestValkey } from "./helpers/valkey";

let valkey: TestValkey;
let server: HttpServer;
let env: AppEnv;

beforeAll(async () => {
  if (!ensureWebBuild(undefined, () => undefined)) throw new Error("web client build failed (npm run build:web)");
  valkey = await startTestValkey();
  env = { REDIS: valkey.redis, KEY_PREFIX: `ws${randomHex(3)}` };
  server = await serveHttp({ app, env, keys: settingsFor(env).keys, pipeline, port: 0, hostname: "127.0.0.1", webDir: WEB_DIST_DIR });
});

afterAll(async () => {
  await server?.close();
  await valkey?.stop();
});

describe("static web client", () => {
  it("serves index.html and hashed assets with their content types", async () => {
    const index = await fetch(`${server.url}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(index.headers.get("cache-control")).toBe("no-cache");
    const html = await index.text();
    const js = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    const css = /href="(\/assets\/[^"]+\.css)"/.exec(html)?.[1];
    expect(js && css).toBeTruthy();
    const script = await fetch(`${server.url}${js}`);
    expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(script.headers.get("cache-control")).toContain("immutable");
    expect((await fetch(`${server.url}${css}`)).headers.get("content-type")).toBe("text/css; charset=utf-8");
    const head = await fetch(`${server.url}${js}`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
  });

  it("falls back to index.html for app routes, never for API paths or missing assets", async () => {
    const route = await fetch(`${server.url}/feed/alice`);
    expect(route.status).toBe(200);
    expect(await route.text()).toContain('<div id="app">');
    for (const path of ["/v1/nope", "/v1/feeds", "/stages/nope"]) {
      const res = await fetch(`${server.url}${path}`);
      expect(res.headers.get("content-type"), path).toContain("application/json");
    }
    expect((await fetch(`${server.url}/health`)).headers.get("content-type")).toContain("application/json");
    expect((await fetch(`${server.url}/metrics`)).headers.get("content-type")).toContain("text/plain");
    expect((await fetch(`${server.url}/assets/missing-abc.js`)).status).toBe(404);
    const traversal = await fetch(`${server.url}/%2e%2e/package.json`);
    expect(await traversal.text()).not.toContain('"name": "edgepipe"');
  });

  it("the feed page's first load stays under 100 KB of JS+CSS (gzip)", () => {
    const size = measureFirstLoad(WEB_DIST_DIR);
    expect(size.files.some((f) => f.path.endsWith(".js"))).toBe(true);
    expect(size.files.some((f) => f.path.endsWith(".css"))).toBe(true);
    expect(size.totalGzipBytes).toBeLessThan(100 * 1024);
  });
});

describe("CORS", () => {
  const preflight = (path: string, method: string, origin: string, corsEnv: AppEnv) =>
    app.request(path, { method: "OPTIONS", headers: { origin, "access-control-request-method": method, "access-control-request-headers": "content-type" } }, corsEnv);

  it("lets any origin read, but no origin write, by default", async () => {
    const read = await app.request("/v1/topics", { headers: { origin: "https://elsewhere.example" } }, env);
    expect(read.status).toBe(200);
    expect(read.headers.get("access-control-allow-origin")).toBe("*");
    const readPre = await preflight("/v1/feeds/alice/events", "GET", "https://elsewhere.example", env);
    expect(readPre.headers.get("access-control-allow-origin")).toBe("*");
    expect(readPre.headers.get("access-control-allow-headers")).toContain("Last-Event-ID");
    const writePre = await preflight("/v1/articles", "POST", "https://elsewhere.example", env);
    expect(writePre.status).toBe(204);
    expect(writePre.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("allows writes from the origins in CORS_ORIGINS, echoing the origin", async () => {
    const corsEnv: AppEnv = { ...env, CORS_ORIGINS: "https://app.example, https://admin.example/" };
    const pre = await preflight("/v1/users/alice", "PUT", "https://admin.example", corsEnv);
    expect(pre.headers.get("access-control-allow-origin")).toBe("https://admin.example");
    expect(pre.headers.get("access-control-allow-methods")).toContain("PUT");
    const put = await app.request("/v1/users/alice", { method: "PUT", headers: { origin: "https://app.example", "content-type": "application/json" }, body: JSON.stringify({ interests: ["sports"] }) }, corsEnv);
    expect(put.status).toBe(200);
    expect(put.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(put.headers.get("vary")).toContain("Origin");
    expect((await preflight("/v1/articles", "POST", "https://other.example", corsEnv)).headers.get("access-control-allow-origin")).toBeNull();
  });

  it("CORS_PUBLIC_READS=off restricts reads to the listed origins", async () => {
    const corsEnv: AppEnv = { ...env, CORS_ORIGINS: "https://app.example", CORS_PUBLIC_READS: "off" };
    expect((await app.request("/v1/topics", { headers: { origin: "https://other.example" } }, corsEnv)).headers.get("access-control-allow-origin")).toBeNull();
    expect((await app.request("/v1/topics", { headers: { origin: "https://app.example" } }, corsEnv)).headers.get("access-control-allow-origin")).toBe("https://app.example");
  });
});

describe("typed client", () => {
  it("hc<AppType> calls the API with typed params and answers", async () => {
    const client = hc<AppType>(server.url);
    const put = await client.v1.users[":uid"].$put({ param: { uid: "typed" }, json: { interests: ["science", "health"] } });
    expect(put.status).toBe(200);
    const feed = await client.v1.feeds[":uid"].$get({ param: { uid: "typed" }, query: { limit: "5" } });
    expect(feed.ok).toBe(true);
    if (feed.ok) {
      const body = await feed.json();
      expect(body).toEqual({ items: [], nextCursor: null });
    }
    const topics = await (await client.v1.topics.$get()).json();
    expect(topics.topics.find((t) => t.name === "science")?.subscribers).toBe(1);
    expect(client.v1.feeds[":uid"].events.$url({ param: { uid: "typed" }, query: { after: "1z" } }).pathname).toBe("/v1/feeds/typed/events");
  });
});
