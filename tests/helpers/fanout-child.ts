/**
 * A process that runs the news fanout stage in a loop, as a worker-host
 * would, until it is killed: `node --import tsx tests/helpers/fanout-child.ts
 * <valkey url> <key prefix>`. Prints "running" once the first batch is done.
 */
import { newEnvelope } from "../../functions/envelope";
import { pipeline } from "../../functions/news/index";
import { runStageBatch } from "../../functions/stage-route";
import { connectValkey, upstashOverValkey } from "../../worker-host/valkey";

const [url, prefix] = process.argv.slice(2);
const conn = connectValkey(url, { name: "fanout-child", log: () => {} });
const env = { REDIS: upstashOverValkey(conn), KEY_PREFIX: prefix, FEED_CAP: "100000" };
let n = 0;
for (let round = 0; ; round++) {
  const batch = Array.from({ length: 8 }, () => newEnvelope("fanout", { feedId: (++n).toString(36), topic: "sports" }));
  const results = await runStageBatch(pipeline, "fanout", env, batch);
  const failed = results.find((r) => !r.ok);
  if (failed && !failed.ok) throw new Error(failed.error.message);
  if (round === 0) process.stdout.write("running\n");
}
