/**
 * Runs: the recent-runs list (GET /v1/runs, newest first, status filter,
 * auto-refresh) and the run inspector: a run's steps on a labelled timeline
 * (queue wait vs handler time), tool-cache hits and its activity log. The
 * inspector polls while the run is still running.
 */
import { useEffect, useState } from "preact/hooks";
import { ApiError, errorText, getRun, getRuns, rerun, runStreamUrl, sendEvent, type PipelineInfo, type Run, type RunStatus, type RunSummary } from "../api";
import { ErrorBox, formatAge, formatMs, formatNumber, href, niceTicks } from "../ui";
const RUN_PATTERN = "[A-Za-z0-9_\\-]{1,64}";

/** Cache facts a step reported in its result (fields whose name mentions "cache"). */
export function cacheFacts(result: unknown): Array<[string, string]> {
  const facts: Array<[string, string]> = [];
  const visit = (value: unknown, path: string, depth: number) => {
    if (value === null || typeof value !== "object" || depth > 2) return;
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const p = path ? `${path}.${k}` : k;
      if (/cache|cached/i.test(k) && (typeof v !== "object" || v === null)) facts.push([p, String(v)]);
      else visit(v, p, depth + 1);
    }
  };
  visit(result, "", 0);
  return facts;
}

/** "hit"/"miss" for boolean cache flags, else `key=value`. */
function describeCache(key: string, value: string): string {
  if (/hit$/i.test(key) && (value === "true" || value === "false")) return value === "true" ? "hit" : "miss";
  return `${key}=${value}`;
}

function time(at?: number): string {
  return at ? new Date(at).toLocaleTimeString(undefined, { hour12: false }) + `.${String(at % 1000).padStart(3, "0")}` : "–";
}

interface Bar {
  stage: string;
  status: string;
  /** ms after the run was created */
  waitFrom: number;
  handlerFrom: number;
  to: number;
}

/**
 * Timeline bars of a run: each step waits in its stream from the previous
 * commit (or the run's creation) until its handler starts, estimated as its
 * commit time minus its handler time, then runs until its commit.
 */
export function waterfallBars(run: Pick<Run, "createdAt" | "steps">): Bar[] {
  const steps = run.steps.filter((s) => typeof s.at === "number").sort((a, b) => a.at! - b.at!);
  if (steps.length === 0) return [];
  const start = run.createdAt ?? Math.min(...steps.map((s) => s.at! - (s.ms ?? 0)));
  let prev = 0;
  return steps.map((s) => {
    const to = s.at! - start;
    const handlerFrom = Math.max(prev, to - (s.ms ?? 0));
    const bar = { stage: s.stage, status: s.status, waitFrom: prev, handlerFrom, to };
    prev = Math.max(prev, to);
    return bar;
  });
}

function Waterfall({ run, trigger }: { run: Run; trigger?: string }) {
  const bars = waterfallBars(run);
  if (bars.length === 0) return null;
  const span = Math.max(1, ...bars.map((b) => b.to));
  const ticks = niceTicks(span);
  const axisEnd = ticks[ticks.length - 1];
  const pct = (ms: number) => `${((ms / axisEnd) * 100).toFixed(2)}%`;
  return (
    <figure class="wf" aria-labelledby="wf-cap">
      <figcaption id="wf-cap">
        <strong>Timeline</strong> (ms since the run started; {formatMs(span)} in all)
        <span class="wf-legend">
          <span>
            <span class="sw wait" aria-hidden="true" /> queue wait: in the stage's stream, from the previous commit until the handler started
          </span>
          <span>
            <span class="sw work" aria-hidden="true" /> handler time, ending at the step's commit
          </span>
        </span>
      </figcaption>
      <div class="wf-rows" role="list">
        {bars.map((b) => {
          const wait = b.handlerFrom - b.waitFrom;
          const work = b.to - b.handlerFrom;
          const isTrigger = b.stage === trigger;
          return (
            <div class="wf-row" role="listitem" data-stage={b.stage}>
              <span class="wf-label">
                {b.stage}
                {isTrigger && <small> trigger</small>}
              </span>
              <div class="wf-track">
                {wait > 0 && <i class="wait" style={{ left: pct(b.waitFrom), width: pct(wait) }} />}
                <i class={`work ${b.status}`} style={{ left: pct(b.handlerFrom), width: pct(work) }} />
              </div>
              <span class="wf-value">
                {isTrigger ? "run created" : b.status === "dead-lettered" ? `dead-lettered at ${formatMs(b.to)}` : `wait ${formatMs(wait)} · handler ${formatMs(work)}`}
              </span>
            </div>
          );
        })}
      </div>
      <div class="wf-axis" aria-hidden="true">
        <span />
        <div class="wf-ticks">
          {ticks.map((t) => (
            <span style={{ left: pct(t) }}>{formatNumber(t)}</span>
          ))}
        </div>
        <span class="wf-unit">ms</span>
      </div>
      <p class="sub">Each step records its commit time and handler time; its bar ends at the commit and starts that handler time earlier, so dispatch and commit overheads count in the queue wait.</p>
    </figure>
  );
}

interface OutputPart {
  stage: string;
  attempt: number;
  text: string;
}

/**
 * A run's streamed output (GET /v1/runs/:runId/stream), shown as it arrives:
 * one block per stage and attempt (a retried step streams anew). Hidden while
 * the run has streamed nothing.
 */
function RunOutput({ runId }: { runId: string }) {
  const [parts, setParts] = useState<OutputPart[]>([]);
  const [state, setState] = useState<"connecting" | "live" | "ended" | "reconnecting">("connecting");
  useEffect(() => {
    setParts([]);
    setState("connecting");
    const source = new EventSource(runStreamUrl(runId));
    source.onopen = () => setState("live");
    source.onerror = () => setState((s) => (s === "ended" ? s : "reconnecting"));
    source.addEventListener("chunk", (e) => {
      const { stage, attempt, chunk } = JSON.parse((e as MessageEvent<string>).data) as { stage: string; attempt: number; chunk: string };
      setParts((prev) => {
        const last = prev[prev.length - 1];
        if (last && last.stage === stage && last.attempt === attempt) return [...prev.slice(0, -1), { ...last, text: last.text + chunk }];
        return [...prev, { stage, attempt, text: chunk }];
      });
    });
    source.addEventListener("end", () => {
      setState("ended");
      source.close();
    });
    return () => source.close();
  }, [runId]);
  if (parts.length === 0) return null;
  return (
    <section class="run-output" aria-labelledby="out-h" aria-live="polite">
      <h3 id="out-h">
        Streamed output <small class={`status ${state === "ended" ? "completed" : "running"}`}>{state}</small>
      </h3>
      {parts.map((p) => (
        <figure data-stage={p.stage}>
          <figcaption>
            {p.stage}
            {p.attempt > 1 && ` (attempt ${p.attempt})`}
          </figcaption>
          <pre class="stream-text">{p.text}</pre>
        </figure>
      ))}
    </section>
  );
}

const STATUSES: RunStatus[] = ["running", "waiting", "delayed", "completed", "failed", "dead-lettered", "skipped"];

/** Parses the JSON a form field holds; undefined for an empty field, an Error for bad JSON. */
function parseJsonField(text: string): { value: unknown } | undefined | Error {
  if (!text.trim()) return undefined;
  try {
    return { value: JSON.parse(text) as unknown };
  } catch (err) {
    return new Error(`not valid JSON: ${(err as Error).message}`);
  }
}

/** Links of a run to its reruns and to the run it reran; its delay; its wait with a form to send the event. */
function DurablePanel({ run, info }: { run: Run; info: PipelineInfo }) {
  const [eventData, setEventData] = useState("{}");
  const [fromStep, setFromStep] = useState(run.rerunOf?.fromStep ?? info.entry);
  const [payload, setPayload] = useState("");
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const act = async (what: () => Promise<string>) => {
    setBusy(true);
    try {
      setMessage({ ok: true, text: await what() });
    } catch (err) {
      setMessage({ ok: false, text: errorText(err) });
    } finally {
      setBusy(false);
    }
  };
  const wait = run.waitingFor;
  return (
    <section class="durable" aria-labelledby="durable-h">
      <h3 id="durable-h">Waits and reruns</h3>
      {run.rerunOf && (
        <p class="rerun-of">
          Rerun of <a href={href("runs", run.rerunOf.runId)}><code>{run.rerunOf.runId}</code></a> from step <strong>{run.rerunOf.fromStep}</strong> with its {run.rerunOf.input === "edited" ? "edited" : "checkpointed"} input.
        </p>
      )}
      {run.reruns && run.reruns.length > 0 && (
        <ul class="reruns" aria-label="Reruns of this run">
          {run.reruns.map((r) => (
            <li data-rerun={r.runId}>
              <a href={href("runs", r.runId)}><code>{r.runId}</code></a> from <strong>{r.fromStep}</strong> ({r.input}, {time(r.at)})
            </li>
          ))}
        </ul>
      )}
      {run.status === "delayed" && run.dueAt && <p class="delayed">Delayed: starts at {new Date(run.dueAt).toLocaleString()}.</p>}
      {wait && (
        <form
          class="wait-form"
          aria-label="Send the event"
          onSubmit={(e) => {
            e.preventDefault();
            const data = parseJsonField(eventData);
            if (data instanceof Error) return setMessage({ ok: false, text: `Event data is ${data.message}` });
            void act(async () => {
              const r = await sendEvent(run.runId, wait.event, data?.value ?? null);
              return `Event ${r.event} sent: the run resumes at ${r.to}.`;
            });
          }}
        >
          <p class="wait-note">
            Parked, waiting for event <code class="wait-event">{wait.event}</code> since {time(wait.since)}
            {wait.timeoutAt ? `; times out at ${new Date(wait.timeoutAt).toLocaleString()}` : "; no timeout"}
            {wait.onTimeout ? ` (then goes to ${wait.onTimeout})` : wait.timeoutAt ? " (then dead-lettered)" : ""}. Its data goes to <strong>{wait.to}</strong>.
          </p>
          <label for="event-data">Event data (JSON)</label>
          <textarea id="event-data" rows={3} value={eventData} onInput={(e) => setEventData(e.currentTarget.value)} />
          <button type="submit" disabled={busy}>Send {wait.event}</button>
        </form>
      )}
      <form
        class="rerun-form"
        aria-label="Rerun from a step"
        onSubmit={(e) => {
          e.preventDefault();
          const edited = parseJsonField(payload);
          if (edited instanceof Error) return setMessage({ ok: false, text: `Payload is ${edited.message}` });
          void act(async () => {
            const r = await rerun(run.runId, fromStep, edited);
            location.hash = href("runs", r.runId);
            return `Rerun ${r.runId} started from ${r.fromStep}.`;
          });
        }}
      >
        <label for="rerun-step">Rerun from step</label>
        <select id="rerun-step" value={fromStep} onChange={(e) => setFromStep(e.currentTarget.value)}>
          {info.stages.map((s) => (
            <option value={s.name}>{s.name}</option>
          ))}
        </select>
        <label for="rerun-payload">Payload (JSON; empty: the input the step had)</label>
        <textarea id="rerun-payload" rows={3} value={payload} onInput={(e) => setPayload(e.currentTarget.value)} placeholder="(checkpointed input)" />
        <button type="submit" disabled={busy}>Rerun</button>
      </form>
      {message && (
        <p class={message.ok ? "ok" : "error"} role="status">
          {message.text}
        </p>
      )}
    </section>
  );
}
const REFRESH_MS = 2000;

/** The newest runs, refreshed every 2 s while the box is ticked. */
function RecentRuns({ info }: { info: PipelineInfo }) {
  const [status, setStatus] = useState<RunStatus | "">("");
  const [auto, setAuto] = useState(true);
  // `status` is the filter the list was loaded with: until the new filter's answer arrives the old list stays up, marked with its own filter.
  const [list, setList] = useState<{ items: RunSummary[]; truncated: boolean; examined: number; at: number; status: RunStatus | "" } | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    let cancelled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = async () => {
      try {
        const r = await getRuns({ limit: 50, ...(status ? { status } : {}) });
        if (cancelled) return;
        setList({ ...r, at: Date.now(), status });
        setError(null);
      } catch (err) {
        if (!cancelled) setError(err);
      }
      if (!cancelled && auto) timer = setTimeout(load, REFRESH_MS);
    };
    void load();
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [status, auto]);

  const now = list?.at ?? Date.now();
  return (
    <section class="panel" aria-labelledby="recent-h">
      <div class="feed-bar">
        <h2 id="recent-h">Recent runs</h2>
        <label for="status-filter">Status</label>
        <select id="status-filter" value={status} onChange={(e) => setStatus(e.currentTarget.value as RunStatus | "")}>
          <option value="">All</option>
          {STATUSES.map((s) => (
            <option value={s}>{s}</option>
          ))}
        </select>
        <label class="check">
          <input type="checkbox" checked={auto} onChange={(e) => setAuto(e.currentTarget.checked)} /> Auto-refresh ({REFRESH_MS / 1000} s)
        </label>
      </div>
      <ErrorBox error={error} />
      {list === null && !error && <p class="meta">Loading…</p>}
      {list && list.items.length === 0 && (
        <div class="empty" role="status">
          {status ? (
            <p>No {status} runs among the newest runs.</p>
          ) : (
            <>
              <p>No runs yet. Start one of the {info.name} pipeline at its entry stage ({info.entry}):</p>
              <pre>
                <code>{`curl -X POST ${location.origin}/v1/runs -H 'content-type: application/json' -d '{"payloads":[ ... ]}'`}</code>
              </pre>
            </>
          )}
        </div>
      )}
      {list && list.items.length > 0 && (
        <div class="scroll-x">
          <table class="runs" data-status={list.status || "any"} aria-busy={list.status !== status}>
            <caption class="sr-only">Recent runs, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Run</th>
                <th scope="col">Status</th>
                <th scope="col" title="Where the run is: its entry stage until the first commit, then the last stage that committed">
                  Stage
                </th>
                <th scope="col">Started</th>
                <th scope="col">Took</th>
              </tr>
            </thead>
            <tbody>
              {list.items.map((r) => (
                <tr data-run={r.runId}>
                  <td>
                    <a href={href("runs", r.runId)}>
                      <code>{r.runId}</code>
                    </a>
                  </td>
                  <td>
                    <span class={`status ${r.status}`}>{r.status}</span>
                  </td>
                  <td>{r.step}</td>
                  <td>
                    <time dateTime={new Date(r.createdAt).toISOString()} title={new Date(r.createdAt).toLocaleString()}>
                      {formatAge(r.createdAt, now)}
                    </time>
                  </td>
                  <td class="num">{r.status === "running" ? "…" : formatMs(r.updatedAt - r.createdAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {list && (
        <p class="sub">
          Newest first, at most 50. Stage: the entry stage until the run's first commit, then the last stage that committed.
          {list.truncated && ` Only the ${formatNumber(list.examined)} newest runs were searched for this status; older ones may exist.`}
        </p>
      )}
    </section>
  );
}

export function RunPage({ runId, info }: { runId?: string; info: PipelineInfo }) {
  const [value, setValue] = useState(runId ?? "");
  const [run, setRun] = useState<Run | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    setValue(runId ?? "");
    setRun(null);
    setError(null);
    if (!runId) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let cancelled = false;
    const load = async () => {
      try {
        const r = await getRun(runId);
        if (cancelled) return;
        setRun(r);
        setError(null);
        // A running, delayed or parked run changes by itself (or by an event sent from here).
        if (r.status === "running" || r.status === "waiting" || r.status === "delayed") timer = setTimeout(load, 1000);
      } catch (err) {
        if (cancelled) return;
        setError(err);
        // A run that was just started may not be visible for a moment.
        if (!(err instanceof ApiError) || err.status >= 500) timer = setTimeout(load, 2000);
      }
    };
    void load();
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [runId]);

  const totalMs = run?.steps.reduce((s, x) => s + (x.ms ?? 0), 0) ?? 0;
  const cacheHits = run?.steps.flatMap((s) => cacheFacts(s.result).map(([k, v]) => ({ stage: s.stage, k, v }))) ?? [];

  return (
    <>
      <section class="panel" aria-labelledby="run-pick">
        <h2 id="run-pick">Run inspector</h2>
        <form
          class="row"
          onSubmit={(e) => {
            e.preventDefault();
            if (e.currentTarget.checkValidity()) location.hash = href("runs", value.trim());
          }}
        >
          <label for="run-input" class="sr-only">
            Run id
          </label>
          <input id="run-input" required pattern={RUN_PATTERN} placeholder="run id (or pick one below)" value={value} onInput={(e) => setValue(e.currentTarget.value)} autocomplete="off" />
          <button type="submit">Inspect</button>
        </form>
      </section>
      {!runId && <RecentRuns info={info} />}
      <ErrorBox error={error} />
      {run && (
        <section class="panel" aria-labelledby="run-h">
          <div class="feed-bar">
            <h2 id="run-h">
              Run <code>{run.runId}</code>
            </h2>
            <a href="#/runs">All recent runs</a>
          </div>
          <dl class="facts">
            <div>
              <dt>Status</dt>
              <dd>
                <span class={`status ${run.status}`}>{run.status}</span>
              </dd>
            </div>
            <div>
              <dt>Step</dt>
              <dd>{run.step || "–"}</dd>
            </div>
            <div>
              <dt>Handler time</dt>
              <dd>{formatNumber(totalMs, 2)} ms</dd>
            </div>
            <div>
              <dt>Wall time</dt>
              <dd>{run.createdAt && run.updatedAt ? `${formatNumber(run.updatedAt - run.createdAt)} ms` : "–"}</dd>
            </div>
            <div>
              <dt>Tool cache</dt>
              <dd>{cacheHits.length ? cacheHits.map((c) => `${c.stage} ${describeCache(c.k, c.v)}`).join(", ") : "not used"}</dd>
            </div>
          </dl>
          <Waterfall run={run} trigger={info.triggerStep} />
          <RunOutput runId={run.runId} />
          <DurablePanel key={run.runId} run={run} info={info} />
          <div class="scroll-x">
            <table>
              <caption class="sr-only">Steps</caption>
              <thead>
                <tr>
                  <th scope="col">#</th>
                  <th scope="col">Stage</th>
                  <th scope="col">Status</th>
                  <th scope="col">Handler ms</th>
                  <th scope="col">Attempt</th>
                  <th scope="col">Committed</th>
                  <th scope="col">Result</th>
                </tr>
              </thead>
              <tbody>
                {run.steps.map((s, i) => (
                  <tr>
                    <td>{i + 1}</td>
                    <th scope="row">{s.stage}</th>
                    <td>
                      <span class={`status ${s.status}`}>{s.status}</span>
                      {s.copied && <small class="copied"> copied</small>}
                    </td>
                    <td class="num">{formatNumber(s.ms, 2)}</td>
                    <td class="num">{s.attempt ?? "–"}</td>
                    <td>{time(s.at)}</td>
                    <td>
                      <code class="json">{s.error ?? (s.result === undefined ? "" : JSON.stringify(s.result))}</code>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <h3>Activity log</h3>
          <ol class="log">
            {run.log.map((l) => {
              const { id, stage, event, at, ...rest } = l;
              return (
                <li>
                  <time>{time(at)}</time> <strong>{stage}</strong> <span class={`status ${event}`}>{event}</span>{" "}
                  <code class="json">{Object.keys(rest).length ? JSON.stringify(rest) : ""}</code>
                  <span class="sr-only"> (entry {id})</span>
                </li>
              );
            })}
          </ol>
        </section>
      )}
    </>
  );
}
