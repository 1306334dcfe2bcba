/**
 * Finds and loads the pipeline module the host runs: `--pipeline <path>`,
 * else `PIPELINE`, else the project's package.json `"edgepipe": { "pipeline" }`.
 * The module's default export is a pipeline (`definePipeline`) or an app
 * (`defineApp`). TypeScript modules load when the process runs with tsx
 * (`npm start` does; the `edgepipe` bin registers it).
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { asEdgeApp, type EdgeApp } from "../functions/edge-app";

export interface PipelineChoice {
  /** As given: a path (relative to the project root) or a package specifier (`edgepipe/news`). */
  specifier: string;
  /** Where it was named. */
  from: "--pipeline" | "PIPELINE" | "package.json";
}

/** Which module to run; throws saying how to name one when nothing does. */
export function choosePipeline({ flag, env = process.env, root = process.cwd() }: { flag?: string; env?: NodeJS.ProcessEnv; root?: string }): PipelineChoice {
  if (flag) return { specifier: flag, from: "--pipeline" };
  if (env.PIPELINE) return { specifier: env.PIPELINE, from: "PIPELINE" };
  const manifest = join(root, "package.json");
  if (existsSync(manifest)) {
    const pkg = JSON.parse(readFileSync(manifest, "utf8")) as { edgepipe?: { pipeline?: unknown } };
    if (typeof pkg.edgepipe?.pipeline === "string") return { specifier: pkg.edgepipe.pipeline, from: "package.json" };
  }
  throw new Error('no pipeline to run: pass --pipeline ./pipeline.ts, set PIPELINE=./pipeline.ts, or add "edgepipe": { "pipeline": "./pipeline.ts" } to package.json');
}

/** True for a file path (as opposed to a package specifier such as `edgepipe/news`). */
function isPath(specifier: string, root: string): boolean {
  return specifier.startsWith(".") || isAbsolute(specifier) || existsSync(resolve(root, specifier));
}

/**
 * Where a pipeline module is: an absolute file path, resolved from `root`
 * (packages through `root`'s node_modules). Throws naming the specifier.
 */
export function resolvePipelineModule(specifier: string, root = process.cwd()): string {
  if (isPath(specifier, root)) {
    const path = resolve(root, specifier);
    if (!existsSync(path)) throw new Error(`pipeline module ${specifier} not found (looked at ${path})`);
    return path;
  }
  try {
    return createRequire(join(resolve(root), "package.json")).resolve(specifier);
  } catch {
    throw new Error(`pipeline module ${specifier} not found: not a file under ${root}, and no installed package exports it`);
  }
}

export interface LoadedApp {
  app: EdgeApp;
  /** Absolute path of the module. */
  path: string;
  choice: PipelineChoice;
}

/**
 * Imports the chosen module and returns its app.
 * @example
 * const { app } = await loadApp(choosePipeline({ flag: "./pipeline.ts" }));
 */
export async function loadApp(choice: PipelineChoice, root = process.cwd()): Promise<LoadedApp> {
  const path = resolvePipelineModule(choice.specifier, root);
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(path).href)) as { default?: unknown };
  } catch (err) {
    const hint = /\.[cm]?tsx?$/.test(path) && /Unknown file extension/.test(String(err)) ? " (a .ts module needs tsx: run through npm start or the edgepipe bin)" : "";
    throw new Error(`could not load pipeline module ${choice.specifier} (${choice.from}): ${(err as Error).message}${hint}`);
  }
  return { app: asEdgeApp(mod.default, `pipeline module ${choice.specifier} (${choice.from})`), path, choice };
}
