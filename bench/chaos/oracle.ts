/**
 * The chaos oracle: after a run's faults, waits for the work to drain, then
 * reads every run, every user's whole feed and the dead letters over the
 * public API and checks that
 * - every accepted article's run completed, and every subscriber of its topic
 *   has it in the feed exactly once, as that article (nothing lost, nothing
 *   duplicated, nothing overwritten);
 * - every poison article is dead-lettered with its reason, every malformed
 *   stream entry too, and nothing else is dead-lettered;
 * - no run completed more than RECOVERY_BOUND_MS after the end of the last
 *   fault that overlapped it (or after it was accepted, when none did).
 * Runs that a simulated power loss under everysec took away after their 202
 * are counted apart (`everysecLost`): that is what everysec may lose.
 */
import type { Keys } from "../../functions/keys";
import type { Connection } from "../../worker-host/valkey";
import type { FaultRecord, TrackedRun } from "./harness";
import { RECOVERY_BOUND_MS } from "./harness";
import type { ChaosHost } from "./hosts";
import type { Fsync } from "./server";

export interface OracleReport {
  runs: number;
  completed: number;
  /** Accepted runs that never completed, plus feed deliveries missing. */
  lost: number;
  lostDetail: string[];
  /** Feed entries beyond the first per (user, article). */
  duplicated: number;
  /** Dead-lettered runs that were not poison. */
  deadLettered: number;
  poison: { injected: number; deadLetteredWithReason: number; malformedInjected: number; malformedDeadLettered: number; malformedEverysecLost?: number };
  /** Accepted (202) runs gone after a simulated power loss under everysec. */
  everysecLost: number;
  /** Articles whose POST was retried after its answer was lost (the first POST's run stands for them). */
  retried: number;
  /** Feed items showing another article than the run they name (an overwritten feed id). */
  wrongItems: number;
  maxDelayMs: number;
  delayed: number;
  feedEntries: number;
  violations: string[];
}

interface CheckInput {
  hosts: ChaosHost[];
  tracked: TrackedRun[];
  users: Array<{ uid: string; interests: string[] }>;
  faults: FaultRecord[];
  /** addedAt: when its XADD was answered (a simulated power loss soon after may take it). */
  malformed: Array<{ marker: string; fields: string[]; reason: RegExp; addedAt?: number }>;
  fsync: Fsync;
  ambiguous: number;
  apiUrl: () => string | undefined;
  log: (line: string) => void;
  admin: Connection;
  keys: Keys;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** GET of a path from a live host (another one on each retry). */
async function getJson(base: () => string, path: string): Promise<{ status: number; json: any }> {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await fetch(`${base()}${path}`, { signal: AbortSignal.timeout(15_000) });
      return { status: res.status, json: await res.json() };
    } catch (err) {
      if (attempt >= 4) throw err;
      await sleep(500);
    }
  }
}

/** Runs `fn` over `items`, `n` at a time. */
async function pool<T, R>(items: T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]);
      }
    }),
  );
  return out;
}

export async function checkRun(input: CheckInput): Promise<OracleReport> {
  const { tracked, users, faults, keys, admin } = input;
  const violations: string[] = [];
  const url = () => {
    const u = input.apiUrl();
    if (!u) throw new Error("no live host to read from");
    return u;
  };

  // Drain: every run terminal (or gone), bounded.
  const lastEnd = Math.max(Date.now(), ...faults.map((f) => f.endedAt));
  const drainUntil = lastEnd + 90_000;
  let open = tracked.map((t) => t.runId);
  while (open.length > 0 && Date.now() < drainUntil) {
    const statuses = await Promise.all(open.map((id) => admin.hget(keys.run(id), "status").catch(() => "running")));
    open = open.filter((_, i) => statuses[i] === "running");
    if (open.length > 0) await sleep(500);
  }
  const drainedMs = Date.now() - lastEnd;
  if (open.length > 0) {
    input.log(`  oracle: ${open.length} run(s) still running ${(drainedMs / 1000).toFixed(0)} s after the last fault`);
    for (const line of await explainStuck(admin, keys, open.slice(0, 2))) input.log(`    ${line}`);
  }

  // Every run over the public API.
  const views = await pool(tracked, 16, async (t) => ({ t, ...(await getJson(url, `/v1/runs/${t.runId}`)) }));
  const cuts = faults.filter((f) => (f.cutBytes ?? 0) > 0);
  let completed = 0;
  let lostRuns = 0;
  let everysecLost = 0;
  let deadLettered = 0;
  let maxDelayMs = 0;
  let delayed = 0;
  const lostDetail: string[] = [];
  /** runId -> { topic, url } of completed article runs. */
  const done = new Map<string, { topic: string; url: string }>();
  const poisonRuns = tracked.filter((t) => t.kind === "poison-reject" || t.kind === "poison-retry");
  /** A retry of a POST whose answer was lost: the runs of the first, unanswered, POST stand for the article. */
  let retried = 0;
  for (const view of views) {
    if (view.status !== 200 || view.json.status !== "skipped") continue;
    const fetcher = (view.json.steps as Array<{ stage: string; result?: { duplicateOf?: string } }>).find((s) => s.stage === "fetcher");
    const first = fetcher?.result?.duplicateOf;
    if (!first || tracked.some((t) => t.runId === first)) continue;
    const original = await getJson(url, `/v1/runs/${first}`);
    if (original.status !== 200) continue;
    retried++;
    Object.assign(view, { status: original.status, json: original.json, t: { ...view.t, runId: first } });
  }
  for (const { t, status, json } of views) {
    const isPoison = t.kind === "poison-reject" || t.kind === "poison-retry";
    if (status === 404) {
      // Accepted, then gone: a simulated power loss under everysec that followed the 202 within its window may take it.
      // Sent before the crash (its 202 may arrive just after it), accepted at most 3 s before it.
      const cut = cuts.find((f) => t.sentAt <= f.startedAt && t.acceptedAt >= f.startedAt - 3000);
      if (cut) {
        everysecLost++;
        cut.everysecLost = (cut.everysecLost ?? 0) + 1;
      }
      else {
        lostRuns++;
        lostDetail.push(`${t.runId} (${t.kind}) unknown after its 202`);
      }
      continue;
    }
    if (isPoison) continue;
    if (json.status === "completed") {
      completed++;
      const fanout = (json.steps as Array<{ stage: string; result?: { topic?: string } }>).find((s) => s.stage === "fanout");
      done.set(t.runId, { topic: String(fanout?.result?.topic ?? ""), url: t.article.url });
      const completedAt = Number(json.updatedAt ?? 0);
      const overlapping = faults.filter((f) => f.startedAt <= completedAt && f.endedAt >= t.acceptedAt).map((f) => f.endedAt);
      const from = Math.max(t.acceptedAt, ...overlapping);
      const delay = completedAt - from;
      maxDelayMs = Math.max(maxDelayMs, delay);
      if (delay > RECOVERY_BOUND_MS) {
        delayed++;
        if (delayed <= 3) violations.push(`run ${t.runId} completed ${(delay / 1000).toFixed(1)} s after ${overlapping.length ? "the fault that delayed it ended" : "it was accepted"}`);
      }
    } else if (json.status === "dead-lettered") {
      deadLettered++;
      if (deadLettered <= 3) violations.push(`run ${t.runId} (${t.kind}) dead-lettered: ${JSON.stringify((json.steps as Array<{ error?: string }>).find((s) => s.error)?.error ?? "")}`);
    } else {
      lostRuns++;
      lostDetail.push(`${t.runId} (${t.kind}) ended ${json.status} at ${json.step}`);
    }
  }

  // Dead letters, per stage, with their reasons.
  const dead = (await getJson(url, `/v1/dead-letters?limit=1000`)).json.items as Array<{ id: string; stage: string; error: string; attempts: number; envelope: unknown }>;
  let poisonOk = 0;
  for (const p of poisonRuns) {
    const view = views.find((v) => v.t.runId === p.runId)!;
    if (view.status === 404) continue; // counted under everysecLost / lost above
    const letter = dead.find((d) => JSON.stringify(d.envelope ?? "").includes(p.runId));
    // A retried poison is dead-lettered with its last failure: its own, or a dispatch failure when
    // its last delivery met a workerd restart (transport failures count as deliveries).
    const want = p.kind === "poison-reject" ? /chaos poison \(rejected\)/ : /chaos poison \(fails every delivery\)|^dispatch failed: .*gave up after \d+ deliveries/;
    if (view.json.status === "dead-lettered" && letter && want.test(letter.error)) poisonOk++;
    else violations.push(`poison ${p.runId} (${p.kind}) is ${view.json.status}${letter ? ` with dead letter "${letter.error}"` : ", no dead letter"}`);
  }
  let malformedOk = 0;
  let malformedEverysecLost = 0;
  for (const m of input.malformed) {
    const letter = dead.find((d) => JSON.stringify(d.envelope ?? "").includes(m.marker));
    if (letter && m.reason.test(letter.error)) malformedOk++;
    // Written, then gone with the AOF a simulated power loss cut, within the same window as an accepted run.
    else if (!letter && m.addedAt !== undefined && cuts.some((f) => m.addedAt! <= f.startedAt && m.addedAt! >= f.startedAt - 3000)) malformedEverysecLost++;
    else violations.push(`malformed entry ${JSON.stringify(m.fields)} not dead-lettered with its reason${letter ? ` (found "${letter.error}")` : ""}`);
  }

  // Every feed, whole, over the public API.
  const byTopic = new Map<string, string[]>();
  for (const [runId, d] of done) byTopic.set(d.topic, [...(byTopic.get(d.topic) ?? []), runId]);
  let missing = 0;
  let duplicated = 0;
  let wrongItems = 0;
  let feedEntries = 0;
  await pool(users, 8, async (u) => {
    const seen = new Map<string, number>();
    let cursor: string | null = null;
    for (let page = 0; page < 1000; page++) {
      const q: string = `/v1/feeds/${u.uid}?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      const { status, json } = await getJson(url, q);
      if (status !== 200) throw new Error(`GET feed of ${u.uid} answered ${status}`);
      for (const item of json.items as Array<{ runId: string; url?: string; topic: string }>) {
        feedEntries++;
        seen.set(item.runId, (seen.get(item.runId) ?? 0) + 1);
        const d = done.get(item.runId);
        if (d && item.url !== undefined && item.url !== d.url) {
          wrongItems++;
          if (wrongItems <= 3) violations.push(`feed of ${u.uid}: item of run ${item.runId} shows ${item.url}, not its article ${d.url}`);
        }
      }
      cursor = json.nextCursor;
      if (!cursor) break;
    }
    for (const [runId, n] of seen) if (n > 1) duplicated += n - 1;
    for (const topic of u.interests) {
      for (const runId of byTopic.get(topic) ?? []) {
        if (!seen.has(runId)) {
          missing++;
          if (missing <= 3) lostDetail.push(`feed of ${u.uid} lacks run ${runId} (${topic})`);
          if (missing === 1) {
            const run = (await getJson(url, `/v1/runs/${runId}`)).json;
            const raw = (await admin.lrange(keys.feed(u.uid), 0, -1)) as string[];
            const ids = (run.steps as Array<{ stage: string; result?: { feedId?: string } }>).map((st) => `${st.stage}:${st.result?.feedId ?? ""}`);
            const fids = [...new Set((run.steps as Array<{ result?: { feedId?: string } }>).map((st) => st.result?.feedId).filter(Boolean))] as string[];
            const detail = await Promise.all(fids.map(async (f) => `${f}: in raw feed ${raw.includes(f)}, article ${JSON.stringify(await admin.hgetall(keys.article(f))).slice(0, 200)}`));
            input.log(`    missing delivery: ${u.uid} (bucket feed len ${raw.length}) run ${runId} steps ${ids.join(" ")}; log ${(run.log as Array<{ stage: string; event: string; attempt?: number }>).map((l) => `${l.stage}:${l.event}`).join(",")}; ${detail.join("; ")}`);
          }
        }
      }
    }
  });

  const lost = lostRuns + missing;
  if (lost > 0) violations.push(`lost: ${lostRuns} run(s), ${missing} feed deliveries; e.g. ${lostDetail.slice(0, 3).join("; ")}`);
  if (duplicated > 0) violations.push(`duplicated: ${duplicated} feed entries`);
  for (const h of input.hosts) violations.push(...h.crashes);
  for (const f of faults) if (f.stalled.length > 0) violations.push(`after ${f.kind} (${f.detail}): stalled ${f.stalled.join("; ")}`);
  return {
    runs: tracked.length,
    completed,
    lost,
    lostDetail,
    duplicated,
    deadLettered,
    poison: { injected: poisonRuns.length, deadLetteredWithReason: poisonOk, malformedInjected: input.malformed.length, malformedDeadLettered: malformedOk, malformedEverysecLost },
    everysecLost,
    retried,
    wrongItems,
    maxDelayMs,
    delayed,
    feedEntries,
    violations,
  };
}

/** Where a stuck run's work is: its checkpoint, log, and the stream entries and pending state that name it. */
async function explainStuck(admin: Connection, keys: Keys, runIds: string[]): Promise<string[]> {
  const lines: string[] = [];
  for (const runId of runIds) {
    lines.push(`${runId}: checkpoint ${JSON.stringify(await admin.hgetall(keys.run(runId)))}`);
    const log = (await admin.xrange(keys.runLog(runId), "-", "+")) as Array<[string, string[]]>;
    lines.push(`  log ${log.map(([id, f]) => `${id} ${f[1]}:${f[3]}`).join(", ")}`);
    for (const stage of ["fetcher", "classifier", "enricher", "fanout"]) {
      const stream = keys.stream(stage, 0);
      const entries = (await admin.xrange(stream, "-", "+")) as Array<[string, string[]]>;
      for (const [id, fields] of entries) {
        if (!fields.join(" ").includes(runId)) continue;
        const pending = await admin.xpending(stream, stage, id, id, 1);
        lines.push(`  ${stage} entry ${id} pending ${JSON.stringify(pending)}`);
      }
      const groups = (await admin.xinfo("GROUPS", stream)) as unknown[];
      lines.push(`  ${stage} groups ${JSON.stringify(groups)}`);
    }
  }
  return lines;
}
