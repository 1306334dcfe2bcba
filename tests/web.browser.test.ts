/**
 * The web client in a real headless Chromium (Debian `chromium`, driven by
 * playwright-core) against the full Node runtime on a real server: feed page
 * with live "Refresh (N)", interests, dashboard, run inspector, topic page,
 * phone viewport. Any console error fails the test. Screenshots land in
 * tests/artifacts/ (git-ignored).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { app, pipeline } from "../functions/index";
import { randomHex } from "../functions/envelope";
import { loadConfig } from "../worker-host/config";
import { startRuntime, type Runtime } from "../worker-host/runtime";
import { ensureWebBuild } from "../worker-host/static-files";
import { eventually, startTestValkey, type TestValkey } from "./helpers/valkey";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = join(process.cwd(), "tests", "artifacts");
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"];
const WAIT = { timeout: 20_000 };

const SPORTS = { title: `Rovers win the league cup final ${randomHex(2)}`, body: "The team won the match in the last minute; the coach praised the players after a long season of games in the league." };
const BUSINESS = { title: `Company profit jumps as shares rally ${randomHex(2)}`, body: "The company said quarterly profit and sales rose; shares gained as the CEO announced a merger deal and the market cheered." };

let valkey: TestValkey;
let runtime: Runtime;
let context: BrowserContext;
let page: Page;
let userDataDir: string;
const consoleErrors: string[] = [];

async function api(path: string, init: { method?: string; body?: unknown } = {}): Promise<any> {
  const res = await fetch(`${runtime.url}${path}`, {
    method: init.method ?? "GET",
    headers: init.body === undefined ? {} : { "content-type": "application/json" },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${init.method ?? "GET"} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/** Ingests one article through the public API and waits until its run completes; returns the run. */
async function ingest(article: { title: string; body: string }): Promise<any> {
  const { runIds } = await api("/v1/articles", { method: "POST", body: { articles: [{ ...article, source: "browser test", url: `https://example.org/${randomHex(4)}` }] } });
  return eventually(async () => {
    const run = await api(`/v1/runs/${runIds[0]}`);
    return run.status === "completed" ? run : null;
  });
}

async function shot(name: string, { fullPage = true }: { fullPage?: boolean } = {}): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage });
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  if (!ensureWebBuild(undefined, () => undefined)) throw new Error("web client build failed (npm run build:web)");
  mkdirSync(ARTIFACTS, { recursive: true });
  valkey = await startTestValkey();
  runtime = await startRuntime({
    config: loadConfig({ VALKEY_URL: valkey.url, PORT: "0", DEMO: "off", KEY_PREFIX: `web${randomHex(3)}` }),
    pipeline,
    app,
    log: () => undefined,
  });
  userDataDir = mkdtempSync(join(tmpdir(), "edgepipe-chromium-"));
  context = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true, viewport: { width: 1100, height: 900 } });
  page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (msg) => {
    if (msg.type() === "error") consoleErrors.push(`console: ${msg.text()}`);
  });
  page.on("pageerror", (err) => consoleErrors.push(`page error: ${err.message}`));
});

afterEach(() => {
  expect(consoleErrors, "console errors in the page").toEqual([]);
});

afterAll(async () => {
  // The browser goes first, so open SSE streams close from the client side.
  await context?.close();
  await runtime?.close();
  await valkey?.stop();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
});

describe("web client in Chromium", () => {
  const uid = `reader${randomHex(3)}`;
  let sportsRun: any;

  it("feed page: a new article in the user's topic shows Refresh (1); clicking it shows the article", async () => {
    await api(`/v1/users/${uid}`, { method: "PUT", body: { interests: ["sports"] } });
    await page.goto(`${runtime.url}/#/feed/${uid}`);
    await page.getByRole("heading", { name: "Feed" }).waitFor(WAIT);
    await page.locator(".live.live").waitFor(WAIT); // SSE connected
    await page.getByText("Nothing in this feed yet").waitFor(WAIT);

    sportsRun = await ingest(SPORTS);
    expect(sportsRun.steps.find((s: any) => s.stage === "classifier")?.result?.topic, "classifier topic of the sports article").toBe("sports");
    const refresh = page.getByRole("button", { name: "Refresh (1)" });
    await refresh.waitFor(WAIT);
    await shot("feed-refresh-waiting");
    await refresh.click();
    await page.getByRole("heading", { name: SPORTS.title, exact: true }).waitFor(WAIT);
    expect(await page.getByRole("button", { name: /^Refresh/ }).count()).toBe(0);
    await shot("feed");
  });

  it("editing interests (keyboard) changes the feed: a business article now arrives", async () => {
    const chip = page.getByRole("button", { name: /business/ });
    expect(await chip.getAttribute("aria-pressed")).toBe("false");
    await chip.focus();
    await page.keyboard.press("Space");
    await page.locator('button.chip[aria-pressed="true"]', { hasText: "business" }).waitFor(WAIT);
    expect((await api(`/v1/users/${uid}`)).interests.sort()).toEqual(["business", "sports"]);

    const run = await ingest(BUSINESS);
    expect(run.steps.find((s: any) => s.stage === "classifier")?.result?.topic, "classifier topic of the business article").toBe("business");
    await page.getByRole("button", { name: "Refresh (1)" }).click(WAIT);
    await page.getByRole("heading", { name: BUSINESS.title }).waitFor(WAIT);

    // Topic filter: only business items.
    await page.getByLabel("Topic", { exact: true }).selectOption("business");
    await page.getByRole("heading", { name: SPORTS.title, exact: true }).waitFor({ state: "detached", ...WAIT });
    expect(await page.locator("article.card").count()).toBe(1);
    await shot("feed-interests-filtered");
    await page.getByLabel("Topic", { exact: true }).selectOption("");
    expect(await page.locator("article.card").count()).toBe(2);
  });

  it("dashboard: per-stage throughput becomes non-zero while articles flow", async () => {
    await page.goto(`${runtime.url}/#/dashboard`);
    await page.getByRole("heading", { name: "Throughput per stage" }).waitFor(WAIT);
    const processedFanout = async () => Number((await page.locator('[data-stage="fanout"] .processed').textContent())?.replace(/\D/g, "") ?? 0);
    expect(await processedFanout()).toBeGreaterThan(0);
    // Articles flowing while the page polls give a non-zero processed delta.
    const more = Array.from({ length: 5 }, (_, i) => ({ title: `${SPORTS.title} replay ${i}`, body: `${SPORTS.body} Round ${i}.` }));
    await api("/v1/articles", { method: "POST", body: { articles: more } });
    await page.waitForFunction(() => [...document.querySelectorAll(".stage-card .peak")].some((el) => Number(el.textContent) > 0), null, WAIT);
    await eventually(async () => (await processedFanout()) >= 7);
    await page.getByText("No dead letters.").waitFor(WAIT);
    // A few more polls, so the screenshot shows the spike inside the window.
    const samples = async () => Number(await page.locator("[data-samples]").getAttribute("data-samples"));
    const seen = await samples();
    await eventually(async () => (await samples()) >= Math.min(seen + 3, 60));
    await shot("dashboard");
  });

  it("dashboard: dead letters are listed and the redrive button sends them back", async () => {
    // An invalid classifier payload is a non-retryable failure: dead-lettered at once.
    await api("/v1/runs", { method: "POST", body: { stage: "classifier", payloads: [{ not: "an article" }] } });
    const button = page.getByRole("button", { name: "Redrive classifier (1)" });
    await button.waitFor(WAIT);
    await page.getByRole("cell", { name: /invalid payload/ }).waitFor(WAIT);
    await shot("dashboard-dead-letters");
    await button.click();
    await page.getByText("Redrove 1 classifier dead letter.").waitFor(WAIT);
  });

  it("run inspector: clicking a feed item's run shows its five steps and the activity log", async () => {
    await page.goto(`${runtime.url}/#/feed/${uid}`);
    const card = page.locator("article.card").filter({ has: page.getByRole("heading", { name: SPORTS.title, exact: true }) });
    await card.getByRole("link", { name: /^run / }).click();
    await page.getByRole("heading", { name: `Run ${sportsRun.runId}` }).waitFor(WAIT);
    expect(page.url()).toContain(`#/runs/${sportsRun.runId}`);
    await page.locator(".facts .status.completed").waitFor(WAIT);
    const stages = await page.locator("tbody tr th[scope=row]").allTextContents();
    expect(stages).toEqual(["ingest", "fetcher", "classifier", "enricher", "fanout"]);
    expect(await page.locator("ol.log li").count()).toBeGreaterThanOrEqual(5);
    await shot("run-inspector");
  });

  it("infinite scroll loads the next page by cursor", async () => {
    const reader = `scroller${randomHex(3)}`;
    await api(`/v1/users/${reader}`, { method: "PUT", body: { interests: ["sports"] } });
    const articles = Array.from({ length: 26 }, (_, i) => ({ title: `Match report ${i}: the team wins game ${i} of the season ${randomHex(2)}`, body: `Game ${i}: the coach said the team played a strong match in the league (${randomHex(3)}).` }));
    await api("/v1/articles", { method: "POST", body: { articles } });
    await eventually(async () => (await api(`/v1/feeds/${reader}?limit=100`)).items.length === 26);
    await page.goto(`${runtime.url}/#/feed/${reader}`);
    await page.locator("article.card").nth(19).waitFor(WAIT);
    expect(await page.locator("article.card").count()).toBe(20);
    await page.locator(".sentinel").scrollIntoViewIfNeeded();
    await page.getByText("End of feed.").waitFor(WAIT);
    expect(await page.locator("article.card").count()).toBe(26);
  });

  it("topic page lists a topic's latest articles", async () => {
    await page.goto(`${runtime.url}/#/topics/business`);
    await page.getByRole("heading", { name: "Latest in business" }).waitFor(WAIT);
    await page.getByRole("heading", { name: BUSINESS.title }).waitFor(WAIT);
    await shot("topic");
  });

  it("works on a phone-sized viewport", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${runtime.url}/#/feed/${uid}`);
    await page.locator("article.card").first().waitFor(WAIT);
    await page.locator(".live.live").waitFor(WAIT);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(overflow, "horizontal overflow on a phone").toBeLessThanOrEqual(0);
    await shot("feed-phone", { fullPage: false });
    await page.goto(`${runtime.url}/#/dashboard`);
    await page.getByRole("heading", { name: "Throughput per stage" }).waitFor(WAIT);
    await shot("dashboard-phone", { fullPage: false });
    await page.setViewportSize({ width: 1100, height: 900 });
  });
});
