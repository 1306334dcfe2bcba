/**
 * Measures the web client's first load: every script, modulepreload and
 * stylesheet that web/dist/index.html references, gzip-compressed (level 9,
 * as a static host would serve them). `npm run size:web`; exits 1 over budget.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

export interface FirstLoadSize {
  files: Array<{ path: string; bytes: number; gzipBytes: number }>;
  totalGzipBytes: number;
}

/** Sizes of the JS and CSS a browser fetches to render index.html. */
export function measureFirstLoad(distDir: string): FirstLoadSize {
  const html = readFileSync(join(distDir, "index.html"), "utf8");
  const refs = [...html.matchAll(/<(?:script[^>]*\ssrc|link[^>]*\shref)="([^"]+\.(?:js|css))"/g)].map((m) => m[1]);
  const files = [...new Set(refs)].map((ref) => {
    const body = readFileSync(join(distDir, ref.replace(/^\//, "")));
    return { path: ref, bytes: body.byteLength, gzipBytes: gzipSync(body, { level: 9 }).byteLength };
  });
  return { files, totalGzipBytes: files.reduce((s, f) => s + f.gzipBytes, 0) };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const budget = 100 * 1024;
  const dist = fileURLToPath(new URL("../../web/dist", import.meta.url));
  const size = measureFirstLoad(dist);
  for (const f of size.files) console.log(`${f.path.padEnd(36)} ${(f.bytes / 1024).toFixed(2).padStart(8)} KB  gzip ${(f.gzipBytes / 1024).toFixed(2).padStart(7)} KB`);
  console.log(`first load JS+CSS gzip: ${(size.totalGzipBytes / 1024).toFixed(2)} KB (budget ${budget / 1024} KB)`);
  process.exit(size.totalGzipBytes <= budget ? 0 : 1);
}
