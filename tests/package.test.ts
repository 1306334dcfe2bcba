/**
 * The package's shape, checked without building it (the reduced version of
 * tests/package.slow.test.ts, which packs, installs and runs the package;
 * `npm run test:slow`): every `exports` and `bin` target is emitted by
 * build:lib (tsconfig.lib.json compiles its source), the published files hold
 * them, and every module the built package imports at run time is Node's own,
 * a dependency or a peer, so an installed copy resolves its imports. The last
 * group feeds the same checks a broken package.json and expects each problem.
 */
import { builtinModules } from "node:module";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const repo = resolve(__dirname, "..");

interface Pkg {
  exports: Record<string, string | { types?: string; default?: string }>;
  bin: Record<string, string>;
  files: string[];
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

/** Dynamic imports the package may make of a module it does not depend on, and why. */
const ON_DEMAND: Record<string, string> = {
  miniflare: "worker-host/http-mode.ts loads it only for the in-process workerd target (kind: miniflare) that tests use; it comes with wrangler, the optional peer",
};

/** tsconfig.lib.json (JSON with comments). */
function libConfig(): { include: string[]; exclude: string[]; outDir: string; rootDir: string } {
  const text = readFileSync(join(repo, "tsconfig.lib.json"), "utf8").replace(/^\s*\/\/.*$/gm, "");
  const c = JSON.parse(text) as { include: string[]; exclude: string[]; compilerOptions: { outDir: string; rootDir: string } };
  return { include: c.include, exclude: c.exclude, outDir: c.compilerOptions.outDir, rootDir: c.compilerOptions.rootDir };
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

/** The sources build:lib compiles (repository-relative). */
function libSources(): string[] {
  const { include, exclude } = libConfig();
  const excluded = (f: string) => exclude.some((e) => f === e || f.startsWith(`${e}/`));
  return include
    .flatMap((d) => filesUnder(join(repo, d)))
    .map((f) => relative(repo, f))
    .filter((f) => /\.tsx?$/.test(f) && !f.endsWith(".d.ts") && !excluded(f));
}

/** `dist/lib/functions/index.js` (or .d.ts) -> the source file tsc emits it from, if build:lib compiles one. */
function sourceOf(target: string, sources: Set<string>): string | undefined {
  const { outDir } = libConfig();
  const rel = relative(join(repo, outDir), join(repo, target));
  if (rel.startsWith("..")) return undefined;
  const stem = rel.replace(/\.d\.ts$|\.js$/, "");
  return [`${stem}.ts`, `${stem}.tsx`].find((s) => sources.has(s));
}

/** Problems with the package's entry points and published files. */
function checkEntries(pkg: Pkg, sources: Set<string>): string[] {
  const problems: string[] = [];
  const targets: Array<[string, string]> = [];
  for (const [name, entry] of Object.entries(pkg.exports)) {
    if (name === "./package.json") continue;
    if (typeof entry === "string") targets.push([`exports["${name}"]`, entry]);
    else {
      if (!entry.types) problems.push(`exports["${name}"] has no types`);
      if (!entry.default) problems.push(`exports["${name}"] has no default`);
      for (const [cond, target] of Object.entries(entry)) if (target) targets.push([`exports["${name}"].${cond}`, target]);
    }
  }
  for (const [name, target] of Object.entries(pkg.bin)) targets.push([`bin.${name}`, target]);
  for (const [where, target] of targets) {
    const source = sourceOf(target, sources);
    if (!source) problems.push(`${where}: ${target} is not emitted by build:lib (no source for it in tsconfig.lib.json)`);
    if (!pkg.files.some((f) => target.replace(/^\.\//, "").startsWith(`${f}/`) || target.replace(/^\.\//, "") === f)) problems.push(`${where}: ${target} is not in "files"`);
  }
  for (const [name, target] of Object.entries(pkg.bin)) {
    const source = sourceOf(target, sources);
    if (source && !readFileSync(join(repo, source), "utf8").startsWith("#!/usr/bin/env node")) problems.push(`bin.${name}: ${source} does not start with #!/usr/bin/env node`);
  }
  if (!pkg.files.includes("LICENSE")) problems.push('"files" does not ship LICENSE');
  return problems;
}

/** The package a bare specifier names (`@scope/name/sub` -> `@scope/name`). */
const packageOf = (spec: string) => (spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]);

/** Problems with the run-time imports of the built package's sources. */
function checkImports(pkg: Pkg, sources: Array<{ file: string; code: string }>): string[] {
  const problems: string[] = [];
  const builtins = new Set(builtinModules);
  const optionalPeer = (p: string) => pkg.peerDependencies?.[p] !== undefined;
  for (const { file, code } of sources) {
    // `import type` / `export type` are erased; everything else is loaded when the module is.
    const imports = [
      ...[...code.matchAll(/^\s*(?:import|export)(?!\s+type\b)[^;"'`]*?from\s*["']([^"'.][^"']*)["']/gm)].map((m) => ({ spec: m[1], dynamic: false })),
      ...[...code.matchAll(/^\s*import\s*["']([^"'.][^"']*)["']/gm)].map((m) => ({ spec: m[1], dynamic: false })),
      ...[...code.matchAll(/\bimport\(\s*["']([^"'.][^"']*)["']\s*\)/g)].map((m) => ({ spec: m[1], dynamic: true })),
    ];
    for (const { spec, dynamic } of imports) {
      if (spec.startsWith("node:") || builtins.has(spec)) continue;
      const name = packageOf(spec);
      if (pkg.dependencies[name] || optionalPeer(name) || (dynamic && ON_DEMAND[name])) continue;
      const where = pkg.devDependencies[name] ? "a devDependency" : "not in package.json";
      problems.push(`${file} imports ${spec}${dynamic ? " (dynamically)" : ""}, which is ${where}: an installed package could not load it`);
    }
  }
  return problems;
}

const pkg = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as Pkg;
const sources = libSources();
const withCode = sources.map((file) => ({ file, code: readFileSync(join(repo, file), "utf8") }));

describe("the package's shape (without building it)", () => {
  it("build:lib compiles the framework, the host and the news app, and no tools or tests", () => {
    expect(sources).toEqual(expect.arrayContaining(["functions/index.ts", "worker-host/index.ts", "worker-host/bin.ts", "functions/news/index.ts"]));
    expect(sources.filter((f) => /\.test\.|^tests\/|^worker-host\/tools\//.test(f))).toEqual([]);
  });

  it("every exports and bin target is emitted by build:lib and published by files", () => {
    expect(Object.keys(pkg.exports)).toEqual(expect.arrayContaining([".", "./host", "./news"]));
    expect(checkEntries(pkg, new Set(sources))).toEqual([]);
    for (const target of ["LICENSE", "README.md"]) expect(existsSync(join(repo, target))).toBe(true);
  });

  it("every module the built package imports at run time is Node's own, a dependency or a peer", () => {
    expect(withCode.length).toBeGreaterThan(20);
    expect(checkImports(pkg, withCode)).toEqual([]);
  });
});

describe("the package checks fail on a broken package", () => {
  it("a missing entry source, an unpublished target, a missing types condition and a dev-only import are each reported", () => {
    const broken: Pkg = {
      ...pkg,
      exports: { ...pkg.exports, "./gone": { types: "./dist/lib/functions/gone.d.ts", default: "./dist/lib/functions/gone.js" }, "./half": { default: "./dist/lib/functions/index.js" } },
      bin: { ...pkg.bin, other: "./build/bin.js" },
    };
    const entryProblems = checkEntries(broken, new Set(sources)).join("\n");
    expect(entryProblems).toMatch(/exports\["\.\/gone"\]\.default: \.\/dist\/lib\/functions\/gone\.js is not emitted by build:lib/);
    expect(entryProblems).toMatch(/exports\["\.\/half"\] has no types/);
    expect(entryProblems).toMatch(/bin\.other: \.\/build\/bin\.js is not in "files"/);
    const importProblems = checkImports(pkg, [
      { file: "worker-host/x.ts", code: 'import { Miniflare } from "miniflare";\nimport type { Page } from "playwright-core";\nimport fc from "fast-check";\nconst m = await import("bullmq");\n' },
    ]).join("\n");
    expect(importProblems).toMatch(/worker-host\/x\.ts imports miniflare, which is a devDependency/);
    expect(importProblems).toMatch(/imports fast-check, which is a devDependency/);
    expect(importProblems).toMatch(/imports bullmq \(dynamically\), which is a devDependency/);
    expect(importProblems).not.toMatch(/playwright-core/);
  });
});
