/**
 * The TypeScript blocks of README.md and docs/*.md type-check against the
 * package's sources (tsconfig `paths`: edgepipe, edgepipe/host, edgepipe/news).
 * This is a type check of the whole package (about as long as `npm run
 * typecheck`), so it runs in `npm run test:slow`; every other docs check is in
 * tests/docs.test.ts. A broken document's removed export must be reported, so
 * the check can fail.
 */
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { REPO, extractBlocks, gatherFacts, readDocs, typeCheckBlocks, writeTsBlocks, type Problem } from "./helpers/docs-check";
import { BROKEN, EXTERNAL_NAMES, SCHEMAS, SELFTEST_DOC } from "./helpers/docs-fixtures";

// Its own directory: tests/docs.test.ts writes (and first removes) tests/artifacts/docs-blocks.
const OUT = join(REPO, "tests", "artifacts", "docs-blocks-types");

const docs = readDocs();
const blocks = docs.flatMap((d) => extractBlocks(d).blocks);
const broken = extractBlocks(BROKEN);
const facts = gatherFacts(REPO, SCHEMAS, [...blocks, ...broken.blocks], EXTERNAL_NAMES);
const fmt = (ps: Problem[]) => ps.map((p) => `${p.doc}:${p.line}: ${p.message}`);

let problems: Problem[] = [];
let count = 0;

beforeAll(async () => {
  const written = writeTsBlocks([...blocks, ...broken.blocks], OUT, facts);
  count = written.filter((w) => w.block.doc !== SELFTEST_DOC).length;
  const started = performance.now();
  problems = await typeCheckBlocks(written);
  console.log(`docs: ${written.length} TypeScript blocks type-checked in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}, 180_000);

describe("docs: TypeScript blocks", () => {
  it("type-check against the package (edgepipe, edgepipe/host, edgepipe/news)", () => {
    expect(count).toBeGreaterThan(4);
    expect(fmt(problems.filter((p) => p.doc !== SELFTEST_DOC))).toEqual([]);
  });

  it("a block importing a removed export is reported", () => {
    expect(fmt(problems.filter((p) => p.doc === SELFTEST_DOC)).join("\n")).toMatch(/has no exported member 'removedExport'/);
  });
});
