/**
 * The web client in a real headless Chromium (Debian `chromium`, driven by
 * playwright-core) against the full Node runtime of the news app on a real
 * server: home page with the demo users, feed page with live "Refresh (N)",
 * interests, recent-runs list, dashboard (pipeline diagram, windowed
 * throughput, explained latency percentiles and tool-cache ring), run
 * inspector with its labelled timeline, topic page, phone viewport. Any
 * console error fails the test. Screenshots land in tests/artifacts/
 * (git-ignored).
 */
import { join } from "node:path";
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { settingsFor } from "../functions/config";
import { randomHex } from "../functions/envelope";
import { app, NewsSettings, pipeline } from "../functions/news/index";
import { seedDemoUsers } from "../functions/news/users";
import { cachedTool } from "../functions/tools/cache";
import type { Runtime } from "../worker-host/runtime";
import { ARTIFACTS, PAGE_STEP, POLL, useBrowserStack, WAIT, type TestBrowser } from "./helpers/browser";
import { eventually } from "./helpers/valkey";

const SPORTS = { title: `Rovers win the league cup final ${randomHex(2)}`, body: "The team won the match in the last minute; the coach praised the players after a long season of games in the league." };
const BUSINESS = { title: `Company profit jumps as shares rally ${randomHex(2)}`, body: "The company said quarterly profit and sales rose; shares gained as the CEO announced a merger deal and the market cheered." };
/** The dashboard's throughput window (web/src/pages/dashboard.tsx WINDOW_MS). */
const WINDOW_MS = 15_000;

let runtime: Runtime;
let browser: TestBrowser;
let page: Page;
const shot = (name: string, options?: { fullPage?: boolean }) => browser.shot(name, options);

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

const samples = async () => Number(await page.locator("[data-samples]").getAttribute("data-samples"));
/** Waits for `n` more dashboard polls (the page keeps at most 90 samples). */
async function pollsPass(n: number): Promise<void> {
  const seen = await samples();
  await eventually(async () => (await samples()) >= Math.min(seen + n, 90), PAGE_STEP);
}

useBrowserStack({ pipeline, app, appSettings: NewsSettings }, (stack) => {
  ({ runtime, browser } = stack);
  page = browser.page;
});

describe("web client in Chromium", () => {
  const uid = `reader${randomHex(3)}`;
  let sportsRun: any;

  it("home page lists the seeded demo users; clicking one opens that user's feed", async () => {
    await page.goto(`${runtime.url}/`);
    await page.getByText("No demo users here").waitFor(WAIT);
    const { keys } = settingsFor(runtime.env);
    await seedDemoUsers(runtime.env.REDIS!, keys, 30);
    await page.reload();
    await page.getByText("30 demo users were seeded (u0001–u0030)").waitFor(WAIT);
    const links = page.locator(".demo-users a");
    expect(await links.count()).toBe(12);
    expect(await links.first().textContent()).toMatch(/^u0001 /);
    expect(await page.getByRole("link", { name: "Feed" }).count(), "news pages in the nav").toBe(1);
    await shot("home-demo-users");
    await links.nth(2).click();
    await page.getByRole("heading", { name: "Interests of u0003" }).waitFor(WAIT);
    expect(page.url()).toContain("#/feed/u0003");
    expect(await page.locator('button.chip[aria-pressed="true"]').count()).toBeGreaterThanOrEqual(2);
  });

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

  it("dashboard: the pipeline diagram shows every stage with a windowed rate, backlog and errors", async () => {
    await page.goto(`${runtime.url}/#/dashboard`);
    await page.getByRole("heading", { name: "Throughput per stage" }).waitFor(WAIT);
    // Boxes and arrows come from GET /v1/pipeline: the trigger pill, four stages, four arrows.
    const diagram = page.locator("svg.diagram");
    expect(await diagram.getAttribute("aria-label")).toBe("Pipeline news: ingest → fetcher → classifier → enricher → fanout");
    expect(await diagram.locator("g.box").evaluateAll((els) => els.map((e) => e.getAttribute("data-stage")))).toEqual(["fetcher", "classifier", "enricher", "fanout"]);
    expect(await diagram.locator("path.edge").count()).toBe(4);
    expect(await diagram.locator("g.trigger text").first().textContent()).toBe("ingest");
    const processedFanout = async () => Number((await page.locator('.stage-card[data-stage="fanout"] .processed').textContent())?.replace(/\D/g, "") ?? 0);
    expect(await processedFanout()).toBeGreaterThan(0);
    await pollsPass(1);
    // Articles flowing while the page polls give a non-zero rate on the boxes.
    const more = Array.from({ length: 5 }, (_, i) => ({ title: `${SPORTS.title} replay ${i}`, body: `${SPORTS.body} Round ${i}.` }));
    await api("/v1/articles", { method: "POST", body: { articles: more } });
    await page.waitForFunction(() => [...document.querySelectorAll(".stage-card .peak")].some((el) => Number(el.textContent) > 0), null, POLL);
    await eventually(async () => (await processedFanout()) >= 7, PAGE_STEP);
    const done = Date.now();
    const boxRate = async () => Number(await diagram.locator('g.box[data-stage="fanout"] .d-rate').evaluate((el) => el.firstChild?.textContent ?? "0"));
    await eventually(async () => (await boxRate()) > 0, PAGE_STEP);
    // A rate over the window, not a delta between two polls: it stays above 0 for polls after the burst.
    await pollsPass(3);
    if (Date.now() - done < WINDOW_MS - 2000) expect(await boxRate(), "fanout rate 3 polls after the burst").toBeGreaterThan(0);
    else console.warn("machine too slow to check that the rate holds over its window");
    expect(await diagram.locator('g.box[data-stage="fanout"] .d-errors').textContent()).toBe("0");
    expect(await diagram.locator('g.box[data-stage="fanout"] .d-backlog').textContent()).toMatch(/^\d+$/);
    await page.getByText("No dead letters.").waitFor(WAIT);
    await shot("dashboard-diagram");
  });

  it("dashboard: latency percentiles say how they are estimated and which bucket holds them", async () => {
    await page.getByText("How these are computed").waitFor(WAIT);
    for (const stage of ["fetcher", "classifier", "enricher", "fanout"]) {
      for (const q of ["p50", "p99"]) {
        const text = (await page.locator(`tr[data-stage="${stage}"] td.${q}`).textContent()) ?? "";
        const m = /^([\d.,]+) \(([\d.,]+)–([\d.,]+)\)$/.exec(text.trim());
        expect(m, `${stage} ${q}: "${text}"`).not.toBeNull();
        const [value, lo, hi] = m!.slice(1).map((x) => Number(x.replace(/,/g, "")));
        expect(value, `${stage} ${q} inside its bucket`).toBeGreaterThanOrEqual(lo);
        expect(value).toBeLessThanOrEqual(hi);
      }
    }
  });

  it("dashboard: the flow-control panel shows each stage's throttled, waiting and readmitted counts from /v1/stats", async () => {
    const { keys } = settingsFor(runtime.env);
    // The counters flow-park.lua and flow-readmit.lua keep (the news stages declare no limits by default).
    await runtime.env.REDIS!.hset(keys.stageStats("classifier", 0), { flow_throttled: 1234, flow_waiting: 34, flow_readmitted: 1200 });
    await page.getByRole("heading", { name: "Flow control" }).waitFor(WAIT);
    const row = page.locator('section[aria-labelledby="flow-h"] tr[data-stage="classifier"]');
    await page.waitForFunction(() => document.querySelector('section[aria-labelledby="flow-h"] tr[data-stage="classifier"] td.throttled')?.textContent?.replace(/\D/g, "") === "1234", undefined, POLL);
    expect((await row.locator("td.flow-waiting").textContent())?.replace(/\D/g, "")).toBe("34");
    expect((await row.locator("td.readmitted").textContent())?.replace(/\D/g, "")).toBe("1200");
    expect((await page.locator('section[aria-labelledby="flow-h"] tr[data-stage="fetcher"] td.throttled').textContent())?.trim()).toBe("0");
  });

  it("dashboard: an empty tool-cache ring says why; a lookup fills it", async () => {
    await page.locator(".cache-empty").getByText("No tool-cache lookups yet").waitFor(WAIT);
    expect(await page.locator("svg.ring").getAttribute("aria-label")).toBe("Tool-cache hit ratio: no data");
    await shot("dashboard-cache-empty");
    const { keys } = settingsFor(runtime.env);
    const lookup = (q: string) => cachedTool(runtime.env.REDIS!, keys, { tool: "probe", args: { q }, ttlSeconds: 60, fn: () => q.length });
    // a: miss, hit, hit; b: miss. 2 hits of 4 lookups: 50 %.
    for (const q of ["a", "a", "a", "b"]) await lookup(q);
    await page.locator('svg.ring[aria-label="Tool-cache hit ratio: 50%"]').waitFor(WAIT);
    expect(await page.locator(".cache-empty").count()).toBe(0);
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

  it("runs page: recent runs newest first with status, stage and age; a new run appears by itself; status filter", async () => {
    await page.goto(`${runtime.url}/#/runs`);
    await page.getByRole("heading", { name: "Recent runs" }).waitFor(WAIT);
    const rows = page.locator("table.runs tbody tr");
    await rows.first().waitFor(WAIT);
    const listed = (await api("/v1/runs?limit=50")).items;
    expect(await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute("data-run")))).toEqual(listed.map((r: any) => r.runId));
    const first = rows.first();
    expect(await first.locator(".status").textContent()).toBe(listed[0].status);
    expect(await first.locator("td").nth(2).textContent()).toBe(listed[0].step);
    expect(await first.locator("time").textContent()).toMatch(/ago$|just now/);
    // Auto-refresh: a run started now shows up at the top without a reload.
    const fresh = await ingest({ title: `Late goal seals the derby ${randomHex(2)}`, body: "The striker scored in the last minute of the match; the team's coach hailed the win in the league." });
    await page.locator(`table.runs tbody tr:first-child[data-run="${fresh.runId}"] .status.completed`).waitFor(WAIT);
    await shot("runs-list");
    // The dead-lettered classifier run of the test above (redriven, and dead-lettered again).
    await page.getByLabel("Status", { exact: true }).selectOption("dead-lettered");
    // The dead-lettered run was already in the unfiltered list: wait for the filtered list to replace it.
    await page.waitForFunction(() => {
      const cells = [...document.querySelectorAll("table.runs tbody tr .status")];
      return cells.length > 0 && cells.every((c) => c.textContent === "dead-lettered");
    }, undefined, POLL);
    const statuses = await page.locator("table.runs tbody tr .status").allTextContents();
    expect(new Set(statuses)).toEqual(new Set(["dead-lettered"]));
    await page.getByLabel("Status", { exact: true }).selectOption("skipped");
    await page.getByText("No skipped runs among the newest runs.").waitFor(WAIT);
    await page.getByLabel("Status", { exact: true }).selectOption("");
    await page.locator(`table.runs tbody tr[data-run="${fresh.runId}"] a`).click();
    await page.getByRole("heading", { name: `Run ${fresh.runId}` }).waitFor(WAIT);
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

  it("run inspector: the timeline is labelled, with an axis in ms and a legend for queue wait vs handler time", async () => {
    const wf = page.locator("figure.wf");
    await wf.waitFor(WAIT);
    const caption = (await wf.locator("figcaption").textContent()) ?? "";
    expect(caption).toContain("ms since the run started");
    expect(caption).toContain("queue wait");
    expect(caption).toContain("handler time");
    expect(await wf.locator(".wf-row .wf-label").allTextContents()).toEqual(["ingest trigger", "fetcher", "classifier", "enricher", "fanout"]);
    // Axis ticks: numbers from 0, increasing, covering the run's wall time; the unit is ms.
    const ticks = (await wf.locator(".wf-ticks span").allTextContents()).map((t) => Number(t.replace(/,/g, "")));
    expect(ticks[0]).toBe(0);
    expect(ticks.length).toBeGreaterThanOrEqual(2);
    for (let i = 1; i < ticks.length; i++) expect(ticks[i]).toBeGreaterThan(ticks[i - 1]);
    expect(ticks[ticks.length - 1]).toBeGreaterThanOrEqual(sportsRun.updatedAt - sportsRun.createdAt);
    expect(await wf.locator(".wf-unit").textContent()).toBe("ms");
    // Each stage row names its wait and handler time; the handler time is the one in the steps table.
    const fetcherMs = sportsRun.steps.find((s: any) => s.stage === "fetcher").ms as number;
    const fetcherValue = (await wf.locator('.wf-row[data-stage="fetcher"] .wf-value').textContent()) ?? "";
    const m = /^wait ([\d.,]+) ms · handler ([\d.,]+) ms$/.exec(fetcherValue);
    expect(m, `fetcher row: "${fetcherValue}"`).not.toBeNull();
    // Shown to one decimal at most (14.95 may read "15"): within half a tenth, float error allowed.
    expect(Math.abs(Number(m![2].replace(/,/g, "")) - fetcherMs)).toBeLessThanOrEqual(0.05 + 1e-9);
    await wf.screenshot({ path: join(ARTIFACTS, "run-waterfall.png") });
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
    expect(await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth), "horizontal overflow on a phone (dashboard)").toBeLessThanOrEqual(0);
    await shot("dashboard-phone", { fullPage: false });
    await page.goto(`${runtime.url}/#/runs/${sportsRun.runId}`);
    await page.locator("figure.wf").waitFor(WAIT);
    expect(await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth), "horizontal overflow on a phone (run)").toBeLessThanOrEqual(0);
    await shot("run-phone", { fullPage: false });
    await page.setViewportSize({ width: 1100, height: 900 });
  });
});
