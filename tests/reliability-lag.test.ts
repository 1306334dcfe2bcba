/**
 * The backlog stays visible across a server restart (issue 10): Redis 7.0
 * reports a group's lag as nil after an AOF reload, so stream-backlog.lua
 * counts it; /v1/stats and /metrics must show the entries that wait.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../functions/app";
import { renderPrometheus, readStats } from "../functions/stats";
import type { AppEnv } from "../functions/redis";
import { connectValkey, runScript, upstashOverValkey, type Connection } from "../worker-host/valkey";
import { countingPipeline } from "./helpers/pipelines";
import { startRestartableValkey, type RestartableValkey } from "./helpers/restartable-valkey";
import { eventually, testKeys } from "./helpers/valkey";

let v: RestartableValkey;
let conn: Connection;

beforeAll(async () => {
  v = await startRestartableValkey({ appendfsync: "always" });
  conn = connectValkey(v.url, { name: "lag-test", log: () => {} });
});
afterAll(async () => {
  conn?.disconnect();
  await v?.stop();
});

/** The lag as the server itself reports it (nil -> null). */
async function serverLag(stream: string, group: string): Promise<number | null> {
  const groups = (await conn.xinfo("GROUPS", stream)) as unknown[][];
  const g = groups.map((fields) => Object.fromEntries(Array.from({ length: fields.length / 2 }, (_, i) => [fields[2 * i], fields[2 * i + 1]]))).find((x) => x.name === group);
  return (g?.lag as number | null | undefined) ?? null;
}

describe("stage lag after a restart on the same AOF", () => {
  it("shows the undelivered entries in /v1/stats and /metrics, counted when the server reports nil", async () => {
    const keys = testKeys();
    const pipeline = countingPipeline();
    const stream = keys.stream("first", 0);
    await conn.xgroup("CREATE", stream, "first", "0", "MKSTREAM");
    // 2,500 entries, 1,200 delivered (and pending): the count crosses several of the script's chunks.
    const pipe = conn.pipeline();
    for (let i = 0; i < 2500; i++) pipe.xadd(stream, "*", "e", JSON.stringify({ i }));
    await pipe.exec();
    await conn.xreadgroup("GROUP", "first", "reader", "COUNT", 1200, "STREAMS", stream, ">");
    expect(await serverLag(stream, "first")).toBe(1300);
    // An empty second stage: lag 0 either way.
    await conn.xgroup("CREATE", keys.stream("second", 0), "second", "0", "MKSTREAM");

    await v.kill9();
    await v.restart();
    await eventually(async () => (await conn.ping()) === "PONG", { timeoutMs: 10_000 });

    const reported = await serverLag(stream, "first");
    console.log(`lag the server reports after the restart: ${reported === null ? "nil (counted by stream-backlog.lua)" : reported}`);
    const env: AppEnv = { REDIS: upstashOverValkey(conn), KEY_PREFIX: keys.prefix, PARTITIONS: "1" };
    const res = await createApp({ pipeline }).request("/v1/stats", {}, env);
    expect(res.status).toBe(200);
    const stats = (await res.json()) as { stages: Array<{ name: string; lag: number; pending: number; streamLength: number }> };
    expect(stats.stages.map((s) => [s.name, s.lag, s.pending, s.streamLength])).toEqual([["first", 1300, 1200, 2500], ["second", 0, 0, 0]]);
    expect(renderPrometheus(await readStats(upstashOverValkey(conn), keys, pipeline))).toContain('edgepipe_stage_lag{stage="first"} 1300');

    // The counted lag follows further reads and writes.
    await conn.xreadgroup("GROUP", "first", "reader", "COUNT", 100, "STREAMS", stream, ">");
    await conn.xadd(stream, "*", "e", "{}");
    expect((await runScript<number[]>(conn, "streamBacklog", [stream], ["first"]))[2]).toBe(1201);
    // A scan cap gives a lower bound, never more than the truth.
    if (reported === null) expect((await runScript<number[]>(conn, "streamBacklog", [stream], ["first", 1]))[2]).toBe(1000);
  });
});
