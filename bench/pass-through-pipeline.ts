/**
 * The trivial 5-stage pipeline of the benchmark: each stage passes its payload
 * on unchanged (runtime overhead alone). Each handler stamps the time it emits
 * (`t`, a microsecond clock shared by the whole process) and records, at its
 * start, how long the envelope took to reach it: that is the hop latency
 * (previous stage's emit, or the enqueue, to this handler's start).
 */
import { z } from "zod";
import { defineStage, definePipeline, type StageDef } from "../functions/pipeline";

export const PASS_STAGES = ["pass1", "pass2", "pass3", "pass4", "pass5"] as const;

/** Wall clock in milliseconds with microsecond resolution. */
export const preciseNow = (): number => performance.timeOrigin + performance.now();

/** Hop latencies (ms) recorded by the handlers, per stage; bench instrumentation only. */
export class HopRecorder {
  readonly hops = new Map<string, number[]>();
  /** Enqueue to the last stage's handler start. */
  readonly endToEnd: number[] = [];
  enabled = false;
  record(stage: string, emittedAt: number, enqueuedAt: number, last: boolean): void {
    if (!this.enabled) return;
    const now = preciseNow();
    let list = this.hops.get(stage);
    if (!list) this.hops.set(stage, (list = []));
    list.push(now - emittedAt);
    if (last) this.endToEnd.push(now - enqueuedAt);
  }
  reset(): void {
    this.hops.clear();
    this.endToEnd.length = 0;
  }
}

export const hopRecorder = new HopRecorder();

/** Payload of the pass-through stages: the article plus the two stamps. */
const PassPayload = z.object({ t: z.number(), t0: z.number() }).passthrough();

/** Builds the 5-stage pass-through pipeline. */
export function passThroughPipeline(recorder: HopRecorder = hopRecorder) {
  const stages: StageDef[] = PASS_STAGES.map((name, i) =>
    defineStage({
      name,
      input: PassPayload,
      next: i + 1 < PASS_STAGES.length ? [PASS_STAGES[i + 1]] : [],
      handle: (payload) => {
        const last = i + 1 === PASS_STAGES.length;
        recorder.record(name, payload.t, payload.t0, last);
        if (last) return { result: { ok: true } };
        return { emit: [{ payload: { ...payload, t: preciseNow() } }] };
      },
    }),
  );
  return definePipeline({ name: "bench-pass-through", stages });
}
