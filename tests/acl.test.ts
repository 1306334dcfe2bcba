/**
 * Valkey ACL users from worker-host/acl.ts (what `npm run acl` prints),
 * applied to a real server: the news app runs end to end under them (the Node
 * host as the host user with VALKEY_URL=redis://user:pass@...; the edge stack
 * with handlers in workerd reaching Valkey through the REST bridge as the
 * bridge user), and what they must not do fails cleanly with NOPERM.
 */
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { Redis } from "@upstash/redis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomHex } from "../functions/envelope";
import { app, pipeline } from "../functions/news/index";
import { NewsSettings } from "../functions/news/config";
import { aclSetUserArgs, aclSetUserLine, serverCommandNames } from "../worker-host/acl";
import { loadConfig } from "../worker-host/config";
import { startHttpModeStack } from "../worker-host/http-mode";
import { startRuntime } from "../worker-host/runtime";
import { connectValkey } from "../worker-host/valkey";
import { newsWorkerBundle } from "./helpers/news-bundle";
import { eventually, startTestValkey, type TestValkey } from "./helpers/valkey";
import { nodeArgs } from "./helpers/node-entry";

let valkey: TestValkey;
const prefix = `acl${randomHex(3)}`;
const hostPassword = randomHex(16);
const bridgePassword = randomHex(16);
const quiet = () => {};

function urlAs(user: string, password: string): string {
  const u = new URL(valkey.url);
  u.username = user;
  u.password = password;
  return u.toString();
}

beforeAll(async () => {
  valkey = await startTestValkey();
  const serverCommands = await serverCommandNames(valkey.conn);
  await valkey.conn.call("ACL", ...aclSetUserArgs({ user: "edgepipe-host", password: hostPassword, prefix, role: "host", serverCommands }));
  await valkey.conn.call("ACL", ...aclSetUserArgs({ user: "edgepipe-bridge", password: bridgePassword, prefix, role: "bridge", serverCommands }));
});

afterAll(async () => {
  await valkey?.stop();
});

const articles = (n: number, tag: string) => ({ articles: Array.from({ length: n }, (_, i) => ({ title: `Local team wins the ${tag} final number ${i}`, body: `The football club won the championship match ${i} after extra time; fans celebrated the league title.` })) });
const json = (method: string, body: unknown) => ({ method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

async function runsFinished(base: string, runIds: string[]): Promise<boolean> {
  for (const id of runIds) {
    const run = (await (await fetch(`${base}/v1/runs/${id}`)).json()) as { status: string };
    if (run.status === "running") return false;
  }
  return true;
}

describe("ACL users", () => {
  it("npm run acl prints one ACL SETUSER line per user, limited to the prefix's keys and channels", () => {
    const out = execFileSync(process.execPath, nodeArgs("worker-host/acl.ts", ["--prefix", "myapp", "--url", valkey.url]), { encoding: "utf8" });
    const lines = out.split("\n").filter((l) => l.startsWith("ACL SETUSER"));
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).toMatch(/^ACL SETUSER edgepipe-(host|bridge) reset on >[0-9a-f]{48} ~myapp:\* resetchannels &myapp:\* -@all /);
      expect(line).not.toMatch(/\+(flushall|flushdb|config|acl|keys|swapdb|migrate|debug|shutdown|module|function|monitor|script\|flush)( |$)/);
      expect(line).toMatch(/\+evalsha /);
    }
    expect(lines[0]).toContain("+client|unblock");
    expect(lines[1]).not.toContain("+subscribe");
    expect(aclSetUserLine({ user: "u", password: "p".repeat(16), prefix: "ep", role: "bridge" })).toContain("~ep:*");
  });

  it("the Node host runs the news app end to end as the host user (VALKEY_URL with user and password)", async () => {
    const config = loadConfig({ VALKEY_URL: urlAs("edgepipe-host", hostPassword), PORT: "0", DEMO: "off", KEY_PREFIX: prefix, BLOCK_MS: "100", WEB_DIR: "" }, { appSettings: NewsSettings });
    const rt = await startRuntime({ config, pipeline, app, log: quiet });
    try {
      expect((await fetch(`${rt.url}/health`)).status).toBe(200);
      expect((await fetch(`${rt.url}/v1/users/fan1`, json("PUT", { interests: ["sports"] }))).status).toBe(200);
      const posted = (await (await fetch(`${rt.url}/v1/articles`, json("POST", articles(5, "node")))).json()) as { runIds: string[] };
      expect(posted.runIds).toHaveLength(5);
      await eventually(() => runsFinished(rt.url, posted.runIds), { timeoutMs: 60_000, stepMs: 200 });
      const statuses = await Promise.all(posted.runIds.map(async (id) => ((await (await fetch(`${rt.url}/v1/runs/${id}`)).json()) as { status: string }).status));
      expect(statuses.every((s) => s === "completed" || s === "skipped"), statuses.join()).toBe(true);
      const feed = (await (await fetch(`${rt.url}/v1/feeds/fan1`)).json()) as { items: unknown[] };
      expect(feed.items.length).toBeGreaterThan(0);
      expect(await valkey.conn.call("ACL", "WHOAMI")).toBe("default");
    } finally {
      await rt.close();
    }
  }, 120_000);

  it("forbidden commands and keys outside the prefix fail cleanly with NOPERM for the host user", async () => {
    const conn = connectValkey(urlAs("edgepipe-host", hostPassword), { name: "acl-probe", log: quiet });
    try {
      await conn.set(`${prefix}:probe`, "1");
      for (const [cmd, ...args] of [["FLUSHALL"], ["CONFIG", "SET", "requirepass", "x"], ["ACL", "SETUSER", "evil"], ["KEYS", "*"], ["SCRIPT", "FLUSH"], ["DEBUG", "SLEEP", "0"], ["SHUTDOWN"], ["GET", "other:key"], ["SET", "ep2:x", "1"]]) {
        // (DEBUG may be refused before the ACL check, by the server's enable-debug-command.)
        await expect(conn.call(cmd, ...args), `${cmd} ${args.join(" ")}`).rejects.toThrow(cmd === "DEBUG" ? /NOPERM|DEBUG command not allowed/ : /NOPERM/);
      }
      // A script cannot reach outside the prefix either.
      await expect(conn.eval("return redis.call('SET', KEYS[1], '1')", 1, "other:key")).rejects.toThrow(/NOPERM|permission/i);
      await expect(conn.call("PUBLISH", "other-channel", "x")).rejects.toThrow(/NOPERM/);
      expect(await conn.get(`${prefix}:probe`)).toBe("1");
      expect(await valkey.conn.exists("other:key")).toBe(0);
    } finally {
      conn.disconnect();
    }
  });

  it("the edge stack runs with the bridge as the bridge user: handlers in workerd work, the bridge user cannot leave the prefix", async () => {
    const bundle = await newsWorkerBundle();
    const config = loadConfig(
      { VALKEY_URL: urlAs("edgepipe-host", hostPassword), BRIDGE_VALKEY_URL: urlAs("edgepipe-bridge", bridgePassword), UPSTASH_REDIS_REST_URL: "http://127.0.0.1:0", PORT: "0", HOST: "127.0.0.1", DEMO: "off", KEY_PREFIX: prefix, BLOCK_MS: "100", SSE_POLL_MS: "100" },
      { appSettings: NewsSettings },
    );
    const stack = await startHttpModeStack({ config, pipeline, workerd: { kind: "miniflare", scriptPath: bundle.scriptPath }, log: quiet });
    try {
      expect((await fetch(`${stack.url}/health`)).status).toBe(200);
      expect((await fetch(`${stack.url}/v1/users/fan2`, json("PUT", { interests: ["sports"] }))).status).toBe(200);
      const posted = (await (await fetch(`${stack.url}/v1/articles`, json("POST", articles(3, "edge")))).json()) as { runIds: string[] };
      await eventually(() => runsFinished(stack.url, posted.runIds), { timeoutMs: 90_000, stepMs: 250 });
      const feed = (await (await fetch(`${stack.url}/v1/feeds/fan2`)).json()) as { items: unknown[] };
      expect(feed.items.length).toBeGreaterThan(0);
      // The bridge's connection is the bridge user's.
      const clients = String(await valkey.conn.call("CLIENT", "LIST"));
      expect(clients).toMatch(/name=edgepipe-rest-bridge .*user=edgepipe-bridge/);

      // Through the bridge (as a handler would), outside the prefix: a clean Upstash-style error, nothing written.
      const redis = new Redis({ url: stack.restUrl, token: stack.restToken, enableAutoPipelining: false });
      await expect(redis.set("other:key", "1")).rejects.toThrow(/NOPERM/);
      await expect(redis.eval("return redis.call('SET', KEYS[1], '1')", ["other:key"], [])).rejects.toThrow(/NOPERM|permission/i);
      expect(await redis.set(`${prefix}:bridge-probe`, "ok")).toBe("OK");
      expect(await valkey.conn.exists("other:key")).toBe(0);
      // The bridge user could not run an admin command even if the allow-list let one by.
      const bridgeConn = connectValkey(urlAs("edgepipe-bridge", bridgePassword), { name: "acl-probe-bridge", log: quiet });
      try {
        for (const [cmd, ...args] of [["FLUSHALL"], ["SUBSCRIBE", `${prefix}:x`], ["CLIENT", "KILL", "ID", "1"], ["CONFIG", "GET", "*"]]) {
          await expect(bridgeConn.call(cmd, ...args), cmd).rejects.toThrow(/NOPERM/);
        }
      } finally {
        bridgeConn.disconnect();
      }
    } finally {
      await stack.close();
    }
  }, 240_000);
});
