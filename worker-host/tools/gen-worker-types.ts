/**
 * Generates functions/worker-configuration.d.ts (the Workers `Env` type) with
 * `wrangler types` from wrangler.toml plus the secret names listed in
 * functions/secrets.example.env. Run: npm run gen:types.
 * `--check` regenerates, compares, restores the committed file and exits 1
 * when it was stale (wrangler's own --check ignores --env-file secrets).
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const out = "functions/worker-configuration.d.ts";

function generate(): void {
  const wrangler = join(root, "node_modules", "wrangler", "bin", "wrangler.js");
  execFileSync(
    process.execPath,
    [wrangler, "types", out, "--include-runtime=false", "--strict-vars=false", "--env-file", "functions/secrets.example.env"],
    // An explicit --env-file replaces .dev.vars, so a developer's local secrets never reach the committed type.
    { cwd: root, stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, WRANGLER_SEND_METRICS: "false" } },
  );
}

const path = join(root, out);
if (process.argv.includes("--check")) {
  const committed = existsSync(path) ? readFileSync(path, "utf8") : "";
  generate();
  const fresh = readFileSync(path, "utf8");
  writeFileSync(path, committed);
  if (fresh !== committed) {
    console.error(`${out} is stale (wrangler.toml or secrets.example.env changed): run npm run gen:types and commit it`);
    process.exit(1);
  }
  console.log(`${out} is up to date`);
} else {
  generate();
  console.log(`wrote ${out}`);
}
