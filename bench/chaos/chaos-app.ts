/**
 * The news app with a fault-injection wrapper around every stage, for
 * `npm run chaos` only (the news app itself ships no such hook). It is a
 * pipeline module like any user's (`npm start -- --pipeline
 * ./bench/chaos/chaos-app.ts`) and Workers-safe, so the same file runs
 * in-process under `npm start` and in workerd behind STAGE_BASE_URL.
 *
 * - Faults: when CHAOS_CONTROL_URL is set, handlers ask it (at most every
 *   100 ms per isolate) for the fault in force: `error` (the handler fails
 *   with a retryable error, as a 500 would) or `hang` (the handler waits
 *   `hangMs` first, longer than the visibility timeout), for one stage or all.
 * - Poison: an article whose title starts with `[chaos-poison:reject]` fails
 *   non-retryably in the fetcher (dead-lettered at once); one starting with
 *   `[chaos-poison:retry]` fails retryably every time (dead-lettered after
 *   MAX_DELIVERIES). Both reasons name the article.
 */
import { z } from "zod";
import { defineApp } from "../../functions/edge-app";
import { definePipeline, StageError, type StageDef } from "../../functions/pipeline";
import { newsApp, NewsSettings } from "../../functions/news/index";

/** What the harness's control endpoint answers. */
export interface ChaosFault {
  kind: "none" | "error" | "hang";
  /** The stage it applies to; absent: every stage. */
  stage?: string;
  hangMs?: number;
}

const ChaosSettings = NewsSettings.extend({
  /** The harness's fault endpoint (unset: no faults). */
  CHAOS_CONTROL_URL: z.string().url().optional(),
});

export const POISON_REJECT = "[chaos-poison:reject]";
export const POISON_RETRY = "[chaos-poison:retry]";

let cached: { at: number; fault: ChaosFault } = { at: 0, fault: { kind: "none" } };

async function currentFault(env: Record<string, unknown>): Promise<ChaosFault> {
  const url = env.CHAOS_CONTROL_URL;
  if (typeof url !== "string" || url === "") return { kind: "none" };
  if (Date.now() - cached.at < 100) return cached.fault;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    cached = { at: Date.now(), fault: (await res.json()) as ChaosFault };
  } catch {
    // The harness is gone or busy: no fault.
    cached = { at: Date.now(), fault: { kind: "none" } };
  }
  return cached.fault;
}

function withFaults(stage: StageDef): StageDef {
  return {
    ...stage,
    handle: async (payload, ctx) => {
      // Poison first: its own reason is what its dead letter must show, whatever fault is in force.
      if (stage.name === "fetcher") {
        const title = String((payload as { title?: unknown }).title ?? "");
        if (title.startsWith(POISON_REJECT)) throw new StageError(`chaos poison (rejected): ${title}`, { retryable: false });
        if (title.startsWith(POISON_RETRY)) throw new Error(`chaos poison (fails every delivery): ${title}`);
      }
      const fault = await currentFault(ctx.env);
      if (fault.kind !== "none" && (!fault.stage || fault.stage === stage.name)) {
        if (fault.kind === "error") throw new Error(`chaos: injected handler failure (500) in ${stage.name}`);
        if (fault.kind === "hang") await new Promise((r) => setTimeout(r, fault.hangMs ?? 10_000));
      }
      return stage.handle(payload, ctx);
    },
  };
}

const news = newsApp.pipeline;
export const chaosPipeline = definePipeline({ name: news.name, triggerStep: news.triggerStep, stages: [...news.stages.values()].map(withFaults) });

export default defineApp({ ...newsApp, name: "news", pipeline: chaosPipeline, settings: ChaosSettings });
