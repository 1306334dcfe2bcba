/**
 * The run inspector's waits and reruns in real headless Chromium (issue 15
 * items 3 and 4): a parked run shows its event and resumes from the form; a
 * rerun from a step with an edited payload starts from the form, is linked
 * both ways; the dashboard counts parked runs. Screenshots land in
 * tests/artifacts/durable-*.png.
 */
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { createApp } from "../functions/app";
import { definePipeline, defineStage } from "../functions/pipeline";
import type { Runtime } from "../worker-host/runtime";
import { POLL, useBrowserStack, WAIT, type TestBrowser } from "./helpers/browser";

const draft = defineStage({ name: "draft", input: z.object({ title: z.string() }), next: ["review"], handle: ({ title }) => ({ emit: [{ payload: { title } }], result: { title } }) });
const review = defineStage({ name: "review", input: z.object({ title: z.string() }), next: ["publish"], handle: ({ title }) => ({ result: { asked: title }, waitFor: { event: "approved", timeoutMs: 3_600_000 } }) });
const publish = defineStage({ name: "publish", input: z.object({ by: z.string() }), next: [], handle: ({ by }) => ({ result: { publishedBy: by } }) });
const pipeline = definePipeline({ name: "approvals", stages: [draft, review, publish], schedules: [{ name: "nightly", cron: "0 2 * * *" }] });

let runtime: Runtime;
let browser: TestBrowser;
let page: Page;
useBrowserStack({ pipeline, app: createApp({ pipeline }) }, (stack) => {
  ({ runtime, browser } = stack);
  page = browser.page;
});

async function start(title: string): Promise<string> {
  const res = await fetch(`${runtime.url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads: [{ title }] }) });
  return ((await res.json()) as { runIds: string[] }).runIds[0];
}

describe("run inspector: waits and reruns", () => {
  let runId = "";

  it("a parked run shows the event it waits for; sending it from the form resumes the run with that data", async () => {
    runId = await start("Launch");
    await page.goto(`${runtime.url}/#/runs/${runId}`);
    await page.locator(".facts .status.waiting").waitFor(WAIT);
    expect(await page.locator(".wait-event").textContent()).toBe("approved");
    expect(await page.locator(".wait-note").textContent()).toContain("Its data goes to publish");
    await browser.shot("durable-parked");
    await page.locator("#event-data").fill('{"by":"ana"}');
    await page.getByRole("button", { name: "Send approved" }).click();
    await page.getByText("Event approved sent: the run resumes at publish.").waitFor(WAIT);
    await page.locator(".facts .status.completed").waitFor(WAIT);
    expect(await page.locator("tbody tr").nth(2).locator("code.json").textContent()).toBe('{"publishedBy":"ana"}');
    expect(await page.locator(".wait-form").count()).toBe(0);
  });

  it("a rerun from a step with an edited payload starts from the form and is linked both ways", async () => {
    await page.locator("#rerun-step").selectOption("publish");
    await page.locator("#rerun-payload").fill('{"by":"bob"}');
    await page.getByRole("button", { name: "Rerun" }).click();
    const rerunOf = page.locator(".rerun-of");
    await rerunOf.waitFor(WAIT);
    expect(await rerunOf.textContent()).toContain(`Rerun of ${runId} from step publish with its edited input`);
    await page.locator(".facts .status.completed").waitFor(WAIT);
    const newId = (await page.locator("#run-h code").textContent())!;
    expect(newId).not.toBe(runId);
    expect(await page.locator("tbody tr th[scope=row]").allTextContents()).toEqual(["draft", "review", "publish"]);
    expect(await page.locator("tbody tr").nth(0).locator(".copied").count()).toBe(1);
    expect(await page.locator("tbody tr").nth(2).locator("code.json").textContent()).toBe('{"publishedBy":"bob"}');
    await browser.shot("durable-rerun");
    await rerunOf.locator("a").click();
    await page.locator(`.reruns li[data-rerun="${newId}"]`).waitFor(WAIT);
    expect(await page.locator(`.reruns li[data-rerun="${newId}"]`).textContent()).toContain("from publish (edited");
  });

  it("the dashboard counts parked runs and lists the schedules; the runs list filters waiting runs", async () => {
    const parked = await start("Second");
    await page.goto(`${runtime.url}/#/dashboard`);
    await page.getByRole("heading", { name: "Waiting runs and schedules" }).waitFor(WAIT);
    await page.waitForFunction(() => document.querySelector(".durable-panel dd.parked")?.textContent === "1", null, POLL);
    expect(await page.locator(".durable-panel dd.schedules").textContent()).toBe("1");
    expect(await page.locator('.schedule-list li[data-schedule="nightly"]').textContent()).toContain("0 2 * * *");
    await browser.shot("durable-dashboard");
    await page.goto(`${runtime.url}/#/runs`);
    await page.locator("#status-filter").selectOption("waiting");
    // The table says which filter it was loaded with: the unfiltered list stays up until the filtered one arrives.
    await page.locator(`table.runs[data-status="waiting"] tr[data-run="${parked}"] .status.waiting`).waitFor(WAIT);
    expect(await page.locator("table.runs tbody tr").count()).toBe(1);
  });
});
