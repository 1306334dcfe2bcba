/**
 * Serves the built web client (web/dist) from the Node HTTP server: files with
 * their content type, hashed assets cached for a year, and index.html for app
 * routes (paths without a file extension) outside the API prefixes.
 */
import { readFile, stat } from "node:fs/promises";
import { existsSync, readdirSync, statSync } from "node:fs";
import { extname, join, resolve, sep } from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".map": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".ico": "image/x-icon",
  ".webp": "image/webp",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
  ".webmanifest": "application/manifest+json",
};

/** Paths that belong to the API and never fall back to index.html. */
const API_PREFIXES = ["/v1/", "/stages/", "/health", "/metrics", "/mcp"];

/** The repository's web/dist directory. */
export const WEB_DIST_DIR = fileURLToPath(new URL("../web/dist", import.meta.url));

/** True when `pathname` is an API path (served by the app, never by static files). */
export function isApiPath(pathname: string): boolean {
  return pathname === "/v1" || API_PREFIXES.some((p) => pathname === p.replace(/\/$/, "") || pathname.startsWith(p));
}

/**
 * Answers a GET/HEAD for a static file or the index.html fallback, or null
 * when the request is not for the web client.
 */
export async function serveStatic(request: Request, dir: string): Promise<Response | null> {
  if (request.method !== "GET" && request.method !== "HEAD") return null;
  let pathname: string;
  try {
    pathname = decodeURIComponent(new URL(request.url).pathname);
  } catch {
    return null;
  }
  if (isApiPath(pathname) || pathname.includes("\0")) return null;
  const root = resolve(dir);
  const wanted = resolve(root, "." + (pathname.endsWith("/") ? pathname + "index.html" : pathname));
  if (wanted !== root && !wanted.startsWith(root + sep)) return null;
  let file = wanted;
  const isFile = await stat(file).then((s) => s.isFile(), () => false);
  if (!isFile) {
    // App routes (no extension) get the client; a missing asset is a real 404.
    if (extname(pathname) !== "") return null;
    file = join(root, "index.html");
  }
  let body: Buffer;
  try {
    body = await readFile(file);
  } catch {
    return null;
  }
  const type = CONTENT_TYPES[extname(file).toLowerCase()] ?? "application/octet-stream";
  const immutable = file.startsWith(join(root, "assets") + sep);
  const headers = {
    "content-type": type,
    "content-length": String(body.byteLength),
    "cache-control": immutable ? "public, max-age=31536000, immutable" : "no-cache",
    "x-content-type-options": "nosniff",
  };
  return new Response(request.method === "HEAD" ? null : new Uint8Array(body), { headers });
}

/** Newest modification time (ms) of the web client's sources. */
function newestSourceMtime(webRoot: string): number {
  let newest = 0;
  const visit = (path: string) => {
    const st = statSync(path);
    if (st.isDirectory()) for (const name of readdirSync(path)) visit(join(path, name));
    else newest = Math.max(newest, st.mtimeMs);
  };
  for (const entry of ["src", "index.html", "vite.config.ts"]) if (existsSync(join(webRoot, entry))) visit(join(webRoot, entry));
  return newest;
}

/**
 * Makes sure web/dist is there and not older than web/src: builds it with
 * Vite when missing or stale (under a second, once), so `npm start` serves the
 * client on a fresh checkout and stays fast otherwise (a few stat calls).
 */
export function ensureWebBuild(dir: string = WEB_DIST_DIR, log: (line: string) => void = console.log): boolean {
  const index = join(dir, "index.html");
  const webRoot = resolve(dir, "..");
  const state = !existsSync(index) ? "missing" : statSync(index).mtimeMs < newestSourceMtime(webRoot) ? "older than web/src" : "ok";
  if (state === "ok") return true;
  const repo = fileURLToPath(new URL("..", import.meta.url));
  log(`web/dist is ${state}: building the web client (npm run build:web)...`);
  // NODE_ENV=production: under vitest (NODE_ENV=test) Vite would otherwise keep dev-only code in the bundle.
  const result = spawnSync("npm", ["run", "--silent", "build:web"], { cwd: repo, stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, NODE_ENV: "production" } });
  if (result.status === 0 && existsSync(index)) return true;
  log("web client build failed; the API still runs. Build it with: npm run build:web");
  return false;
}
