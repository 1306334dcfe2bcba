/**
 * The order the suite's files start in: longest first, by the seconds each
 * took in a recent full run (tests/file-seconds.json), so the forks end
 * together instead of one starting a 30 s file when the others are done.
 * vitest's own order needs its results cache, which a fresh clone (CI) does
 * not have: there it runs the largest files first, and the two fuzz files and
 * the chaos test, among the smallest, came last. Files the list does not know
 * run first (a new file may be long). Refresh the list after a full
 * `npm test`: `npm run test:order`.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { BaseSequencer, type TestSpecification } from "vitest/node";

export const FILE_SECONDS = join(process.cwd(), "tests", "file-seconds.json");

export default class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const seconds: Record<string, number> = existsSync(FILE_SECONDS) ? (JSON.parse(readFileSync(FILE_SECONDS, "utf8")) as Record<string, number>) : {};
    const known = (spec: TestSpecification) => seconds[relative(this.ctx.config.root, spec.moduleId)];
    return [...files].sort((a, b) => {
      if (a.project.name !== b.project.name) return a.project.name < b.project.name ? -1 : 1;
      const [sa, sb] = [known(a), known(b)];
      if (sa === undefined || sb === undefined) return sa === undefined && sb !== undefined ? -1 : sb === undefined && sa !== undefined ? 1 : 0;
      return sb - sa;
    });
  }
}
