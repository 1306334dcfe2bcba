/**
 * The run inspector's live stream panel in real headless Chromium (issue 16):
 * a handler streams chunks with `ctx.stream.write` and holds between them
 * until the test lets it go on, so each chunk is seen in the page while the
 * run is still running; once the step commits the panel says `ended` and the
 * run is completed. Screenshots land in tests/artifacts/stream-*.png.
 */
import type { Page } from "playwright-core";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { createApp } from "../functions/app";
import { definePipeline, defineStage } from "../functions/pipeline";
import type { Runtime } from "../worker-host/runtime";
import { POLL, useBrowserStack, WAIT, type TestBrowser } from "./helpers/browser";

/** Gates the handler waits on between chunks (the handler runs in this process: the runtime dispatches in-process). */
const gates: Array<() => void> = [];
const gate = () => new Promise<void>((resolve) => gates.push(resolve));
const release = async () => {
  const deadline = Date.now() + WAIT.timeout;
  while (gates.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  gates.shift()!();
};

const write = defineStage({
  name: "write",
  input: z.object({ topic: z.string() }),
  next: [],
  handle: async ({ topic }, ctx) => {
    await ctx.stream.write(`A poem `);
    await gate();
    await ctx.stream.write(`about ${topic}, `);
    await gate();
    await ctx.stream.write("streamed.");
    return { result: { chars: `A poem about ${topic}, streamed.`.length } };
  },
});
const pipeline = definePipeline({ name: "poems", stages: [write] });

let runtime: Runtime;
let browser: TestBrowser;
let page: Page;
useBrowserStack({ pipeline, app: createApp({ pipeline }) }, (stack) => {
  ({ runtime, browser } = stack);
  page = browser.page;
});

describe("run inspector: streamed output", () => {
  it("shows a handler's chunks live, while the run runs, and ends the panel when the step commits", async () => {
    const res = await fetch(`${runtime.url}/v1/runs`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ payloads: [{ topic: "streams" }] }) });
    const runId = ((await res.json()) as { runIds: string[] }).runIds[0];
    await page.goto(`${runtime.url}/#/runs/${runId}`);
    const text = page.locator('.run-output figure[data-stage="write"] .stream-text');
    const state = page.locator(".run-output h3 .status");

    await page.waitForFunction(() => document.querySelector(".run-output .stream-text")?.textContent === "A poem ", null, POLL);
    expect(await state.textContent()).toBe("live");
    expect(await page.locator(".facts .status").first().textContent()).toBe("running");
    await browser.shot("stream-live");

    await release();
    await page.waitForFunction(() => document.querySelector(".run-output .stream-text")?.textContent === "A poem about streams, ", null, POLL);
    expect(await state.textContent()).toBe("live");

    await release();
    await page.waitForFunction(() => document.querySelector(".run-output h3 .status")?.textContent === "ended", null, POLL);
    expect(await text.textContent()).toBe("A poem about streams, streamed.");
    await page.locator(".facts .status.completed").waitFor(WAIT);
    expect(await page.locator(".run-output figcaption").allTextContents()).toEqual(["write"]);
    await browser.shot("stream-ended");
  });
});
