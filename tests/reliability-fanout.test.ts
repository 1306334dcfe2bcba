/**
 * fanout.deliveries stays exact when the process that fans out is killed
 * with -9 mid-batch (issue 10): the counter is written by fan-out.lua in the
 * same call as the deliveries it counts, so no kill can land between them.
 */
import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomHex } from "../functions/envelope";
import { createKeys } from "../functions/keys";
import { setInterests } from "../functions/news/users";
import { readFanoutDeliveries } from "../functions/stats";
import { eventually, startTestValkey, type TestValkey } from "./helpers/valkey";
import { nodeArgs } from "./helpers/node-entry";

let v: TestValkey;
beforeAll(async () => {
  v = await startTestValkey();
});
afterAll(async () => {
  await v?.stop();
});

const USERS = 150;

/** Runs the fanout stage in a child process and kills it with SIGKILL `afterMs` after its first batch. */
async function fanOutUntilKilled(prefix: string, afterMs: number): Promise<void> {
  const child = spawn(process.execPath, nodeArgs("tests/helpers/fanout-child.ts", [v.url, prefix]), { stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => d.toString().includes("running") && resolve());
    child.once("exit", (code) => reject(new Error(`fan-out child exited early (${code})`)));
  });
  await new Promise((r) => setTimeout(r, afterMs));
  child.kill("SIGKILL");
  await exited;
}

describe("fan-out deliveries counter under kill -9", () => {
  it("equals the feed entries actually written after a kill mid-fan-out", async () => {
    const report: string[] = [];
    for (const afterMs of [300]) {
      const keys = createKeys({ prefix: `k${randomHex(3)}` });
      const uids = Array.from({ length: USERS }, (_, i) => `u${i}`);
      await Promise.all(uids.map((uid) => setInterests(v.redis, keys, uid, ["sports"])));
      await fanOutUntilKilled(keys.prefix, afterMs);
      // Commands the child sent before dying still run on the server: wait until the feeds stop growing.
      const feedEntries = async () => (await Promise.all(uids.map((u) => v.conn.llen(keys.feed(u))))).reduce((s, n) => s + n, 0);
      let last = -1;
      const written = await eventually(async () => {
        const now = await feedEntries();
        const settled = now === last;
        last = now;
        return settled ? now : null;
      }, { stepMs: 100 });
      const counted = await readFanoutDeliveries(v.redis, keys);
      report.push(`${afterMs} ms: ${written} written, ${counted} counted`);
      expect(written).toBeGreaterThan(0);
      expect(counted).toBe(written);
    }
    console.log(`fan-out kills: ${report.join("; ")}`);
  });
});
