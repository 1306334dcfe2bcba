/**
 * Generates functions/lua.generated.ts from lua/*.lua, so Workers and Node
 * load the very same script text (and its SHA-1) without a file system.
 * Run: npm run gen:lua. `--check` exits 1 when the generated file is stale.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync, existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const out = join(root, "functions", "lua.generated.ts");

export function renderLuaModule(): string {
  const files = readdirSync(join(root, "lua")).filter((f) => f.endsWith(".lua")).sort();
  const entries = files.map((file) => {
    const source = readFileSync(join(root, "lua", file), "utf8");
    const name = file.replace(/\.lua$/, "").replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const sha = createHash("sha1").update(source).digest("hex");
    return `  ${name}: { name: ${JSON.stringify(file)}, sha: ${JSON.stringify(sha)}, source: ${JSON.stringify(source)} },`;
  });
  return [
    "// Generated from lua/*.lua by worker-host/tools/gen-lua.ts (npm run gen:lua). Do not edit.",
    "export const LUA = {",
    ...entries,
    "} as const;",
    "",
  ].join("\n");
}

const isMain = process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1];
if (isMain) {
  const text = renderLuaModule();
  if (process.argv.includes("--check")) {
    const current = existsSync(out) ? readFileSync(out, "utf8") : "";
    if (current !== text) {
      console.error("functions/lua.generated.ts is stale: run npm run gen:lua");
      process.exit(1);
    }
    console.log("functions/lua.generated.ts is up to date");
  } else {
    writeFileSync(out, text);
    console.log(`wrote ${out}`);
  }
}
