/**
 * The framework does not know its apps: no file of the framework
 * (functions/ minus the apps) or of the host (worker-host/ minus its news
 * tools) imports the news app or the example; functions/ stays Workers-safe
 * (no node:*, no iovalkey, nothing from worker-host/). Imports are read from
 * the sources, so a new file is covered without listing it.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(__dirname, "..");

/** Apps: what neither the framework nor the host may import. */
const APP_DIRS = ["functions/news", "functions/example", "worker-host/news"];

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const path = join(dir, name);
    if (statSync(join(root, path)).isDirectory()) out.push(...sourceFiles(path));
    else if (/\.(ts|tsx|mts)$/.test(name) && !name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

/** Module specifiers a source imports (static, re-exports, dynamic), comments removed. */
function importsOf(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const specs = new Set<string>();
  for (const m of code.matchAll(/(?:^|[\s;])(?:import|export)\s[^"';]*?\sfrom\s*["']([^"']+)["']/g)) specs.add(m[1]);
  for (const m of code.matchAll(/(?:^|[\s;])import\s*["']([^"']+)["']/g)) specs.add(m[1]);
  for (const m of code.matchAll(/\bimport\s*\(\s*["']([^"']+)["']\s*\)/g)) specs.add(m[1]);
  return [...specs];
}

/** Repo-relative target of a relative specifier (`functions/news/users`), else the specifier. */
function target(file: string, spec: string): string {
  if (!spec.startsWith(".")) return spec;
  return relative(root, resolve(root, dirname(file), spec)).split(sep).join("/");
}

function isInside(path: string, dir: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

/** Violations of `file` (given its source): imports of an app from outside that app's folder. */
function appImports(file: string, source: string): string[] {
  const own = APP_DIRS.find((d) => isInside(file, d));
  return importsOf(source)
    .map((spec) => ({ spec, to: target(file, spec) }))
    .filter(({ to }) => APP_DIRS.some((d) => d !== own && isInside(to, d) && !(own?.endsWith("/news") && d.endsWith("/news"))))
    .map(({ spec }) => `${file} imports ${spec}`);
}

const frameworkAndHost = [...sourceFiles("functions"), ...sourceFiles("worker-host")].filter((f) => !APP_DIRS.some((d) => isInside(f, d)));

describe("import boundaries", () => {
  it("the scanner sees real imports, re-exports and dynamic imports, and flags an app import", () => {
    expect(importsOf(readFileSync(join(root, "functions/news/index.ts"), "utf8"))).toEqual(expect.arrayContaining(["../edge-app", "./pipeline", "./config"]));
    expect(importsOf('export { x } from "./a";\nconst m = await import("../b");\n// import y from "./commented"\nimport "./side";')).toEqual(["./a", "./side", "../b"]);
    expect(appImports("worker-host/cli.ts", 'import { seedDemoUsers } from "../functions/news/users";')).toEqual(["worker-host/cli.ts imports ../functions/news/users"]);
    expect(appImports("functions/app.ts", 'import { x } from "./example/pipeline";')).toHaveLength(1);
    // The news app's Node tools may use the news app's Workers code, and the host.
    expect(appImports("worker-host/news/replay.ts", 'import { ingestArticles } from "../../functions/news/ingest";\nimport { loadConfig } from "../config";')).toEqual([]);
    expect(frameworkAndHost).toEqual(expect.arrayContaining(["worker-host/cli.ts", "worker-host/config.ts", "functions/index.ts", "functions/app.ts"]));
    expect(frameworkAndHost.some((f) => f.includes("/news/"))).toBe(false);
  });

  it("no framework or host file imports an app (functions/news, functions/example, worker-host/news)", () => {
    const violations = frameworkAndHost.flatMap((f) => appImports(f, readFileSync(join(root, f), "utf8")));
    expect(violations).toEqual([]);
  });

  it("apps import each other never, and the example imports no news code", () => {
    const appFiles = APP_DIRS.flatMap((d) => sourceFiles(d));
    const violations = appFiles.flatMap((f) => appImports(f, readFileSync(join(root, f), "utf8")));
    expect(violations).toEqual([]);
  });

  it("functions/ stays Workers-safe: no node:*, no iovalkey, nothing from worker-host/", () => {
    const bad = sourceFiles("functions").flatMap((f) =>
      importsOf(readFileSync(join(root, f), "utf8"))
        .filter((spec) => spec.startsWith("node:") || spec === "iovalkey" || isInside(target(f, spec), "worker-host"))
        .map((spec) => `${f} imports ${spec}`),
    );
    expect(bad).toEqual([]);
  });
});
