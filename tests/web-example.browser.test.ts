/**
 * The generic web pages for a pipeline that is not the news app: the example
 * pipeline (normalize -> wordcount) built with createApp({ pipeline }) and
 * served by the Node runtime as `npm start` serves it, in real headless
 * Chromium. Runs list, run inspector and dashboard work; no feed or topic
 * page appears. Screenshots land in tests/artifacts/example-*.png.
 */
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { createApp } from "../functions/app";
import { settingsFor } from "../functions/config";
import { examplePipeline } from "../functions/example/pipeline";
import type { Runtime } from "../worker-host/runtime";
import { POLL, useBrowserStack, WAIT, type TestBrowser } from "./helpers/browser";

let runtime: Runtime;
let browser: TestBrowser;
let page: Page;

const RECENT_RUNS_MAX = 40;

useBrowserStack({ pipeline: examplePipeline, app: createApp({ pipeline: examplePipeline }), env: { RECENT_RUNS_MAX: String(RECENT_RUNS_MAX) } }, (stack) => {
  ({ runtime, browser } = stack);
  page = browser.page;
});

describe("web client for the example pipeline (no news app)", () => {
  let runIds: string[] = [];

  it("home is the runs page, the nav has no feed or topic pages, and an empty list says how to start a run", async () => {
    await page.goto(`${runtime.url}/`);
    await page.getByRole("heading", { name: "Recent runs" }).waitFor(WAIT);
    expect(await page.locator("nav a").allTextContents()).toEqual(["Runs", "Pipeline"]);
    expect(await page.locator(".pipeline-name").textContent()).toBe("example");
    await page.getByText("No runs yet. Start one of the example pipeline at its entry stage (normalize):").waitFor(WAIT);
    expect(await page.locator(".empty code").textContent()).toContain(`${runtime.url}/v1/runs`);
  });

  it("runs started with POST /v1/runs appear completed in the list by themselves and open in the inspector", async () => {
    const res = await fetch(`${runtime.url}/v1/runs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ payloads: [{ text: "one  two three" }, { text: " four five " }, { text: "six" }] }),
    });
    expect(res.status).toBe(202);
    runIds = ((await res.json()) as { runIds: string[] }).runIds;
    for (const id of runIds) await page.locator(`table.runs tr[data-run="${id}"] .status.completed`).waitFor(WAIT);
    expect(await page.locator("table.runs tbody tr td:nth-child(3)").allTextContents()).toEqual(["wordcount", "wordcount", "wordcount"]);
    await browser.shot("example-runs");
    await page.locator(`table.runs tr[data-run="${runIds[0]}"] a`).click();
    await page.getByRole("heading", { name: `Run ${runIds[0]}` }).waitFor(WAIT);
    expect(await page.locator("tbody tr th[scope=row]").allTextContents()).toEqual(["normalize", "wordcount"]);
    expect(await page.locator(".wf-row .wf-label").allTextContents()).toEqual(["normalize", "wordcount"]);
    expect(await page.locator("tbody tr").nth(1).locator("code.json").textContent()).toBe('{"words":3}');
    await browser.shot("example-run");
  });

  it("dashboard draws normalize -> wordcount from the pipeline definition, with no news panels", async () => {
    await page.goto(`${runtime.url}/#/dashboard`);
    await page.getByRole("heading", { name: "Throughput per stage" }).waitFor(WAIT);
    const diagram = page.locator("svg.diagram");
    expect(await diagram.getAttribute("aria-label")).toBe("Pipeline example: normalize → wordcount");
    expect(await diagram.locator("g.box").evaluateAll((els) => els.map((e) => e.getAttribute("data-stage")))).toEqual(["normalize", "wordcount"]);
    expect(await diagram.locator("path.edge").count()).toBe(1);
    expect(await diagram.locator("g.trigger").count()).toBe(0);
    expect(await page.locator('.stage-card[data-stage="wordcount"] .processed').textContent()).toBe("3");
    await page.getByRole("heading", { name: "Tool cache", exact: true }).waitFor(WAIT);
    const why = (await page.locator(".cache-empty").textContent()) ?? "";
    expect(why).toContain("No tool-cache lookups yet");
    expect(why).not.toContain("news app");
    expect(await page.getByText("Feed deliveries").count()).toBe(0);
    // Two polls in, the rates read 0/s instead of "measuring".
    await page.waitForFunction(() => Number(document.querySelector("[data-samples]")?.getAttribute("data-samples")) >= 3, null, POLL);
    expect(await diagram.locator('g.box[data-stage="wordcount"] .d-rate').evaluate((el) => el.firstChild?.textContent)).toBe("0");
    await browser.shot("example-dashboard");
  });

  it("the host's RECENT_RUNS_MAX bounds the recent-runs index the list reads", async () => {
    const post = (payloads: unknown[]) => fetch(`${runtime.url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads }) });
    for (let i = 0; i < 3; i++) expect((await post(Array.from({ length: 20 }, (_, n) => ({ text: `bulk ${i} ${n}` })))).status).toBe(202);
    const { keys } = settingsFor(runtime.env);
    expect(await runtime.conn.zcard(keys.recentRuns(0))).toBe(RECENT_RUNS_MAX);
    const list = (await (await fetch(`${runtime.url}/v1/runs?limit=100`)).json()) as { items: unknown[] };
    expect(list.items).toHaveLength(RECENT_RUNS_MAX);
  });

  it("a feed link explains that the feed comes with the news app; POST /v1/articles answers 404", async () => {
    await page.goto(`${runtime.url}/#/feed/u0001`);
    await page.getByRole("heading", { name: "No feed on this server" }).waitFor(WAIT);
    await page.getByText("This server runs the example pipeline with no app mounted.").waitFor(WAIT);
    const res = await fetch(`${runtime.url}/v1/articles`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ articles: [{ title: "t", body: "b" }] }) });
    expect(res.status).toBe(404);
  });
});
