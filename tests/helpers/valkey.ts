/**
 * One real Valkey-protocol server per test file, started with the project's
 * own launcher on a free port in a temp dir (never 6379). Honours
 * VALKEY_SERVER=/path/to/valkey-server.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomHex } from "../../functions/envelope";
import { createKeys, type Keys } from "../../functions/keys";
import { launchValkey, type RunningValkey } from "../../worker-host/valkey-launcher";
import { connectValkey, upstashOverValkey, type Connection } from "../../worker-host/valkey";
import type { RedisClient } from "../../functions/redis";

export interface TestValkey {
  server: RunningValkey;
  url: string;
  /** A command connection (closed by stop()). */
  conn: Connection;
  /** @upstash/redis client over `conn`. */
  redis: RedisClient;
  /** Opens another connection, closed by stop(). */
  connect(): Connection;
  stop(): Promise<void>;
}

/** Starts a throwaway server; call stop() in afterAll. */
export async function startTestValkey(): Promise<TestValkey> {
  const dir = mkdtempSync(join(tmpdir(), "edgepipe-test-"));
  const server = await launchValkey({ dataDir: dir, appendOnly: false });
  const conns: Connection[] = [];
  const connect = () => {
    const c = connectValkey(server.url, { name: "edgepipe-test" });
    conns.push(c);
    return c;
  };
  const conn = connect();
  return {
    server,
    url: server.url,
    conn,
    redis: upstashOverValkey(conn),
    connect,
    async stop() {
      await Promise.allSettled(conns.map((c) => c.quit()));
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A random key prefix per test, so tests in one file never share keys. */
export function testKeys(partitions = 1): Keys {
  return createKeys({ prefix: `t${randomHex(4)}`, partitions });
}

/** Polls `check` until it returns a truthy value or the timeout passes. */
export async function eventually<T>(check: () => Promise<T> | T, { timeoutMs = 20_000, stepMs = 20 } = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, stepMs));
  }
  throw new Error(`condition not met in ${timeoutMs} ms${last ? `: ${(last as Error).message}` : ""}`);
}
