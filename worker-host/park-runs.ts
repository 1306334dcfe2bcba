/**
 * Parking runs whose handler asked to wait for an event (`waitFor`): one
 * park-runs.lua call per partition commits the step, records the wait, puts
 * the run in the partition's parked set and acks the entry, so a waiting run
 * holds no consumer and no pending entry. The stage worker hands its
 * "waiting" results here instead of to commit-stage.lua.
 */
import type { Envelope, StageSuccess } from "../functions/envelope";
import type { Keys } from "../functions/keys";
import { runScript, type Connection } from "./valkey";

export interface WaitingEntry {
  partition: number;
  id: string;
  envelope: Envelope;
  result: StageSuccess;
  /** Checkpoint field of the step (`step:<stage>`, `#branch` added for a branch). */
  stepField: string;
}

/** Commits waiting results as parked runs; returns how many were parked (the rest were redelivered duplicates). */
export async function parkRuns(conn: Connection, keys: Keys, { stage, consumer, entries, now = Date.now() }: { stage: string; consumer: string; entries: WaitingEntry[]; now?: number }): Promise<number> {
  const byPartition = new Map<number, WaitingEntry[]>();
  for (const e of entries) byPartition.set(e.partition, [...(byPartition.get(e.partition) ?? []), e]);
  const replies = await Promise.all(
    [...byPartition].map(([p, list]) => {
      const scriptKeys = [keys.stream(stage, p), keys.stageStats(stage, p), keys.lastErrors(stage, p), keys.parked(p)];
      const args: Array<string | number> = [keys.group(stage), stage, now, list.length];
      for (const { id, envelope, result, stepField } of list) {
        const wait = result.waitFor!;
        scriptKeys.push(keys.run(envelope.runId), keys.runLog(envelope.runId));
        const stepJson = JSON.stringify({ status: "waiting", result: result.result, ms: result.ms, attempt: envelope.attempt, at: now, by: consumer, waitFor: wait.event });
        args.push(id, scriptKeys.length - 1, scriptKeys.length, envelope.runId, stepField, stepJson, wait.event, wait.timeoutAt ?? "+inf", wait.to, wait.onTimeout ?? "", envelope.traceId, envelope.branch ?? "");
      }
      return runScript<[number, number]>(conn, "parkRuns", scriptKeys, args);
    }),
  );
  return replies.reduce((s, r) => s + Number(r[0]), 0);
}
