/**
 * Real headless Chromium (Debian `chromium`, driven by playwright-core) for
 * the browser tests: one persistent context per test file, console errors
 * collected (a test fails on any), screenshots into tests/artifacts/.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const ARTIFACTS = join(process.cwd(), "tests", "artifacts");
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"];
/** Bound of every wait on the page. */
export const WAIT = { timeout: 20_000 };

export interface TestBrowser {
  page: Page;
  /** Console errors and page errors seen so far (tests expect none). */
  errors: string[];
  /** Writes tests/artifacts/<name>.png. */
  shot(name: string, options?: { fullPage?: boolean }): Promise<void>;
  close(): Promise<void>;
}

/** Launches Chromium with a fresh profile; says how to install it when missing. */
export async function launchBrowser({ width = 1100, height = 900 }: { width?: number; height?: number } = {}): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  const userDataDir = mkdtempSync(join(tmpdir(), "edgepipe-chromium-"));
  const context: BrowserContext = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, viewport: { width, height } });
  const page = context.pages()[0] ?? (await context.newPage());
  const errors: string[] = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`console: ${msg.text()}`);
  });
  page.on("pageerror", (err) => errors.push(`page error: ${err.message}`));
  return {
    page,
    errors,
    shot: async (name, { fullPage = true } = {}) => {
      await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage });
    },
    close: async () => {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}
