/**
 * Run inspector: a run's steps with timings (waterfall), tool-cache hits and
 * its activity log. Polls while the run is still running.
 */
import { useEffect, useState } from "preact/hooks";
import { ApiError, getRun, type Run } from "../api";
import { ErrorBox, formatNumber, href } from "../ui";

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

function Waterfall({ run }: { run: Run }) {
  const steps = run.steps.filter((s) => typeof s.at === "number");
  if (steps.length === 0) return null;
  const start = run.createdAt ?? Math.min(...steps.map((s) => (s.at ?? 0) - (s.ms ?? 0)));
  const end = Math.max(...steps.map((s) => s.at ?? 0), start + 1);
  const span = end - start;
  const x = (t: number) => Math.max(0, Math.min(100, ((t - start) / span) * 100));
  let prev = start;
  return (
    <svg class="waterfall" viewBox={`0 0 100 ${steps.length * 12}`} preserveAspectRatio="none" role="img" aria-label={`Timeline over ${formatNumber(span)} ms: light = waiting in the stream, dark = handler time`}>
      {steps.map((s, i) => {
        const handlerStart = (s.at ?? 0) - (s.ms ?? 0);
        const wait = { x: x(prev), w: Math.max(0, x(handlerStart) - x(prev)) };
        prev = s.at ?? prev;
        return (
          <g>
            <rect class="wait" x={wait.x} y={i * 12 + 2} width={wait.w} height="8" />
            <rect class={`work ${s.status}`} x={x(handlerStart)} y={i * 12 + 2} width={Math.max(0.6, x(s.at ?? 0) - x(handlerStart))} height="8" />
          </g>
        );
      })}
    </svg>
  );
}

export function RunPage({ runId }: { runId?: string }) {
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
        if (r.status === "running") timer = setTimeout(load, 1000);
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
          <input id="run-input" required pattern={RUN_PATTERN} placeholder="run id (feed items link to theirs)" value={value} onInput={(e) => setValue(e.currentTarget.value)} autocomplete="off" />
          <button type="submit">Inspect</button>
        </form>
      </section>
      <ErrorBox error={error} />
      {run && (
        <section class="panel" aria-labelledby="run-h">
          <h2 id="run-h">
            Run <code>{run.runId}</code>
          </h2>
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
          <Waterfall run={run} />
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
