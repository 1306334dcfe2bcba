/**
 * `npm run test:order`: writes tests/file-seconds.json, the order the suite's
 * files start in (tests/helpers/sequencer.ts), from the last full run's
 * times (tests/artifacts/test-times.json, written by the suite's summary).
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const times = join("tests", "artifacts", "test-times.json");
if (!existsSync(times)) {
  console.error(`${times} is missing: run the whole suite first (npm test)`);
  process.exit(1);
}
const rows = JSON.parse(readFileSync(times, "utf8")) as Array<{ file: string; seconds: number }>;
if (rows.length < 20) {
  console.error(`${times} holds ${rows.length} files: it is from a partial run; run the whole suite first (npm test)`);
  process.exit(1);
}
const seconds = Object.fromEntries(rows.sort((a, b) => b.seconds - a.seconds).map((r) => [r.file, Math.round(r.seconds * 10) / 10]));
writeFileSync(join("tests", "file-seconds.json"), `${JSON.stringify(seconds, null, 1)}\n`);
console.log(`tests/file-seconds.json: ${rows.length} files, longest ${rows[0]!.file} (${rows[0]!.seconds.toFixed(1)} s)`);
