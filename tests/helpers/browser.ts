/**
 * Real headless Chromium (Debian `chromium`, driven by playwright-core) for
 * the browser tests: one Chromium per test process (vitest runs files one
 * after another in the same forks, `isolate: false`), a fresh browser context
 * per test file (its own cookies, storage and cache), console errors
 * collected (a test fails on any), screenshots into tests/artifacts/; and the
 * stack they run against (a real server, the Node runtime as `npm start`
 * runs it, the web build).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, expect } from "vitest";
import { randomHex } from "../../functions/envelope";
import type { Pipeline } from "../../functions/pipeline";
import { loadConfig, type LoadConfigOptions } from "../../worker-host/config";
import { startRuntime, type Runtime, type RuntimeOptions } from "../../worker-host/runtime";
import { ensureWebBuild } from "../../worker-host/static-files";
import { startTestCluster, type TestCluster } from "./cluster";
import { startTestValkey, type TestValkey } from "./valkey";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const ARTIFACTS = join(process.cwd(), "tests", "artifacts");
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"];
/** Bound of every wait on the page. */
export const WAIT = { timeout: 20_000 };
/**
 * Options of `page.waitForFunction`: WAIT, the condition checked every 100 ms
 * instead of at every animation frame (60 a second, which keeps Chromium
 * drawing frames: about 0.1 s of its CPU per second waited, against 0.03 s).
 */
export const POLL = { ...WAIT, polling: 100 };
/** `eventually` over values read from the page: each read is a round trip to Chromium (every 20 ms: about 0.25 s of CPU per second waited). */
export const PAGE_STEP = { stepMs: 100 };

export interface TestBrowser {
  page: Page;
  /** Console errors and page errors seen so far (tests expect none). */
  errors: string[];
  /** Writes tests/artifacts/<name>.png. */
  shot(name: string, options?: { fullPage?: boolean }): Promise<void>;
  /** Closes this file's context (the Chromium stays for the next file of the process). */
  close(): Promise<void>;
}

/**
 * Features switched off in Chromium: playwright-core's own list (1.65; a second
 * `--disable-features` replaces the first, so ours repeats it) and the omnibox
 * popup WebUI that Chromium 156 preloads for each new window, a renderer of
 * its own that took about 1.5 s of CPU per browser context while the tests
 * never show it.
 */
const DISABLED_FEATURES = [
  "AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose", "HttpsUpgrades", "HttpsFirstBalancedModeAutoEnable", "LensOverlay", "MediaRouter", "PaintHolding",
  "ThirdPartyStoragePartitioning", "AvoidCorsURLLoaderRestartOnRedirect", "TcpPortRandomizationWin", "OptimizationHints", "NetworkTimeServiceQuerying", "AimEnabled", "PreconnectToSearch",
  "msForceBrowserSignIn", "msEdgeUpdateLaunchServicesPreferredVersion",
  "WebUIOmniboxPopup", "WebUIOmniboxFullPopup", "WebUIOmniboxAimPopup", "PreloadTopChromeWebUI",
];

/** The features the `--disable-features` switches before the last one (playwright-core's, the launcher script's) name, in the Chromium browser processes this process started (Linux /proc; none elsewhere). */
function replacedDisabledFeatures(): string[] {
  const features: string[] = [];
  try {
    for (const task of readdirSync(`/proc/${process.pid}/task`)) {
      for (const pid of readFileSync(`/proc/${process.pid}/task/${task}/children`, "utf8").split(" ").filter(Boolean)) {
        // Chromium may rewrite its command line as one string: split at spaces too.
        const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split(/[\0 ]/);
        if (!args.includes("--remote-debugging-pipe") || args.some((a) => a.startsWith("--type="))) continue;
        features.push(...args.filter((a) => a.startsWith("--disable-features=")).slice(0, -1).flatMap((a) => a.slice("--disable-features=".length).split(",")));
      }
    }
  } catch {
    // not Linux, or a process ended meanwhile
  }
  return features;
}

/** Launches Chromium with `disabled` switched off; when playwright-core's own list has features `disabled` lacks (a newer playwright-core), again with them added. */
async function launchChromium(disabled: string[]): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, `--disable-features=${disabled.join(",")}`], headless: true, handleSIGTERM: false, handleSIGHUP: false });
  const missing = [...new Set(replacedDisabledFeatures())].filter((f) => f && !disabled.includes(f));
  if (missing.length === 0) return browser;
  console.warn(`tests/helpers/browser.ts: playwright-core also disables ${missing.join(", ")}: add them to DISABLED_FEATURES`);
  await browser.close();
  return launchChromium([...disabled, ...missing]);
}

/**
 * The Chromium of this test process, launched by the first file that asks
 * (about 2 s of CPU a launch, against about 0.4 s for a context in a running
 * one). It lives until the process exits: playwright kills its process group
 * on `exit`, and a SIGTERM (how vitest stops a fork) exits the process so that
 * this runs; had the process been killed outright, Chromium ends when its
 * DevTools pipe closes. A browser that crashed or was closed is launched anew.
 */
let shared: Promise<Browser> | undefined;
function sharedBrowser(): Promise<Browser> {
  if (!shared) {
    const launching = launchChromium(DISABLED_FEATURES);
    shared = launching;
    launching.then(
      (browser) => browser.on("disconnected", () => shared === launching && (shared = undefined)),
      () => shared === launching && (shared = undefined),
    );
    // Node's default SIGTERM ends the process without `exit` handlers: exit instead, so they run.
    if (process.listenerCount("SIGTERM") === 0) process.once("SIGTERM", () => process.exit(143));
  }
  return shared;
}

/** A fresh context (and page) in this process's Chromium; says how to install Chromium when missing. */
export async function launchBrowser({ width = 1100, height = 900 }: { width?: number; height?: number } = {}): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  const context: BrowserContext = await (await sharedBrowser()).newContext({ viewport: { width, height } });
  const page = await context.newPage();
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
    close: () => context.close(),
  };
}

export interface BrowserStack {
  /** The test server, or with WEB_TEST_CLUSTER=1 the 3-master test cluster. */
  valkey: TestValkey | TestCluster;
  runtime: Runtime;
  browser: TestBrowser;
  /** Browser first (so open SSE streams close from the client side), then runtime and server. */
  close(): Promise<void>;
}

/** A test server, the runtime serving `app` and the web client on a free port (`env`: more host settings; `appSettings`: the app's schema), and Chromium. */
export async function startBrowserStack({ pipeline, app, env = {}, appSettings }: { pipeline: Pipeline; app: RuntimeOptions["app"]; env?: Record<string, string>; appSettings?: LoadConfigOptions["appSettings"] }): Promise<BrowserStack> {
  if (!ensureWebBuild(undefined, () => undefined)) throw new Error("web client build failed (npm run build:web)");
  // WEB_TEST_CLUSTER=1 (tests/web-cluster.browser.slow.test.ts): the same stack on a 3-master cluster.
  const onCluster = process.env.WEB_TEST_CLUSTER === "1";
  const valkey = onCluster ? await startTestCluster({ masters: 3 }) : await startTestValkey();
  const store = "url" in valkey ? { VALKEY_URL: valkey.url } : { VALKEY_CLUSTER_NODES: valkey.cluster.seedList };
  const runtime = await startRuntime({
    config: loadConfig({ ...store, PORT: "0", DEMO: "off", KEY_PREFIX: `web${randomHex(3)}`, ...env }, { appSettings }),
    pipeline,
    app,
    log: () => undefined,
  });
  if (onCluster && runtime.mode !== "cluster") throw new Error(`WEB_TEST_CLUSTER=1 but the runtime runs in ${runtime.mode} mode`);
  const browser = await launchBrowser();
  return {
    valkey,
    runtime,
    browser,
    close: async () => {
      await browser.close();
      await runtime.close();
      await valkey.stop();
    },
  };
}

/**
 * Registers a test file's hooks: starts the stack before all tests (handing it
 * to `ready`), fails a test that left console errors, closes it all after.
 */
export function useBrowserStack(options: Parameters<typeof startBrowserStack>[0], ready: (stack: BrowserStack) => void): void {
  let stack: BrowserStack | undefined;
  beforeAll(async () => {
    stack = await startBrowserStack(options);
    ready(stack);
  });
  afterEach(() => {
    expect(stack?.browser.errors, "console errors in the page").toEqual([]);
  });
  afterAll(async () => {
    await stack?.close();
  });
}
