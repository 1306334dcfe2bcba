/**
 * Pipeline dashboard, live from GET /v1/stats (polled every second) over the
 * shape from GET /v1/pipeline: a diagram of the stages with throughput,
 * backlog and errors on each box, per-stage throughput as a rate over a
 * sliding window, handler latency percentiles (estimated from the histogram,
 * and said so), tool cache, fan-out, flow control (throttled, waiting,
 * readmitted per stage), and dead letters with a redrive button.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { getDeadLetters, getStats, redrive, type DeadLetter, type PipelineInfo, type Stats } from "../api";
import { Bars, ErrorBox, formatNumber, Ring, Sparkline } from "../ui";

const POLL_MS = 1000;
/** Throughput is the processed-counter delta over this window (not between two polls, which flickers 0/1). */
export const WINDOW_MS = 15_000;
const HISTORY = 90;
/** Sparkline points: one windowed rate per poll, the last 60 polls. */
const SPARK_POINTS = 60;

interface Sample {
  t: number;
  stats: Stats;
}

type StageStats = Stats["stages"][number];

function processedAt(sample: Sample, stage: string): number {
  return sample.stats.stages.find((s) => s.name === stage)?.processed ?? 0;
}

/**
 * Items/s of a stage over the window ending at sample `end`: the delta of its
 * `processed` counter from the oldest sample inside the window. Null until two
 * samples are a poll apart.
 */
export function windowRate(samples: Sample[], stage: string, end = samples.length - 1, windowMs = WINDOW_MS): number | null {
  const last = samples[end];
  if (!last) return null;
  let first = end;
  while (first > 0 && last.t - samples[first - 1].t <= windowMs) first--;
  if (first === end) return null;
  const dt = (last.t - samples[first].t) / 1000;
  // A counter that went down (server restarted without its data) counts as no progress.
  return dt > 0 ? Math.max(0, processedAt(last, stage) - processedAt(samples[first], stage)) / dt : null;
}

/** Windowed rates at every sample (a smooth series for the sparkline). */
export function throughputSeries(samples: Sample[], stage: string): number[] {
  const out: number[] = [];
  for (let i = 1; i < samples.length; i++) out.push(windowRate(samples, stage, i) ?? 0);
  return out;
}

/** Columns of the diagram: each stage at its longest distance from the entry (bounded, so a cycle cannot loop). */
export function stageColumns(info: Pick<PipelineInfo, "entry" | "stages">): string[][] {
  const n = info.stages.length;
  const depth = new Map<string, number>([[info.entry, 0]]);
  for (let round = 0; round < n; round++) {
    for (const s of info.stages) {
      const d = depth.get(s.name);
      if (d === undefined) continue;
      for (const t of s.next) if (d + 1 < n && (depth.get(t) ?? -1) < d + 1) depth.set(t, d + 1);
    }
  }
  const cols: string[][] = [];
  // Stages no path reaches from the entry (runs may start there) sit in the first column.
  for (const s of info.stages) (cols[depth.get(s.name) ?? 0] ??= []).push(s.name);
  return cols.filter(Boolean);
}

const BOX = { w: 150, h: 100, gapX: 44, gapY: 18, gapFlow: 34, pad: 8, trigger: 96, pill: 44 };

interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** An arrow from one box to the next along the flow; a loop back to an earlier column runs around the boxes. */
function edgePath(a: Rect, b: Rect, vertical: boolean): string {
  if (!vertical && b.x > a.x + a.w) {
    const [x1, y1, x2, y2] = [a.x + a.w, a.y + a.h / 2, b.x - 2, b.y + b.h / 2];
    return `M${x1},${y1} C${x1 + BOX.gapX / 2},${y1} ${x2 - BOX.gapX / 2},${y2} ${x2},${y2}`;
  }
  if (vertical && b.y > a.y + a.h) {
    const [x1, y1, x2, y2] = [a.x + a.w / 2, a.y + a.h, b.x + b.w / 2, b.y - 2];
    return `M${x1},${y1} C${x1},${y1 + BOX.gapFlow / 2} ${x2},${y2 - BOX.gapFlow / 2} ${x2},${y2}`;
  }
  if (vertical) {
    const xr = Math.max(a.x + a.w, b.x + b.w) + 16;
    return `M${a.x + a.w},${a.y + a.h / 2} C${xr},${a.y + a.h / 2} ${xr},${b.y + b.h / 2} ${b.x + b.w + 2},${b.y + b.h / 2}`;
  }
  const yb = Math.max(a.y + a.h, b.y + b.h) + 16;
  return `M${a.x + a.w / 2},${a.y + a.h} C${a.x + a.w / 2},${yb} ${b.x + b.w / 2},${yb} ${b.x + b.w / 2},${b.y + b.h + 2}`;
}

function PipelineDiagram({ info, stages, rates }: { info: PipelineInfo; stages: StageStats[]; rates: Map<string, number | null> }) {
  const cols = stageColumns(info);
  const rows = Math.max(...cols.map((c) => c.length));
  // Top to bottom on a phone, left to right elsewhere (read on every poll, so a resize applies within a second).
  const vertical = typeof matchMedia === "function" && matchMedia("(max-width: 560px)").matches;
  const offset = info.triggerStep ? (vertical ? BOX.pill + BOX.gapFlow : BOX.trigger + BOX.gapX) : 0;
  const flowGap = vertical ? BOX.gapFlow : BOX.gapX;
  const crossGap = vertical ? BOX.gapX : BOX.gapY;
  const pos = new Map<string, Rect>();
  cols.forEach((col, c) =>
    col.forEach((name, r) => {
      const along = BOX.pad + offset + c * ((vertical ? BOX.h : BOX.w) + flowGap);
      const across = BOX.pad + r * ((vertical ? BOX.w : BOX.h) + crossGap);
      pos.set(name, vertical ? { x: across, y: along, w: BOX.w, h: BOX.h } : { x: along, y: across, w: BOX.w, h: BOX.h });
    }),
  );
  const loops = info.stages.some((s) => s.next.some((t) => cols.findIndex((c) => c.includes(t)) <= cols.findIndex((c) => c.includes(s.name))));
  const flowLength = BOX.pad * 2 + offset + cols.length * (vertical ? BOX.h : BOX.w) + (cols.length - 1) * flowGap;
  const crossLength = BOX.pad * 2 + rows * (vertical ? BOX.w : BOX.h) + (rows - 1) * crossGap + (loops ? 24 : 0);
  const [width, height] = vertical ? [crossLength, flowLength] : [flowLength, crossLength];
  const entry = pos.get(info.entry)!;
  const pill: Rect = vertical
    ? { x: entry.x + (BOX.w - BOX.trigger) / 2, y: BOX.pad, w: BOX.trigger, h: BOX.pill }
    : { x: BOX.pad, y: entry.y + (BOX.h - BOX.pill) / 2, w: BOX.trigger, h: BOX.pill };
  const flow = [...(info.triggerStep ? [info.triggerStep] : []), ...cols.map((c) => c.join(" | "))].join(" → ");
  return (
    <div class="scroll-x">
      <svg
        class="diagram"
        viewBox={`0 0 ${width} ${height}`}
        style={{ maxWidth: `${width}px`, minWidth: vertical ? undefined : `${Math.min(width, 560)}px` }}
        role="img"
        aria-label={`Pipeline ${info.name}: ${flow}`}
      >
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
            <path d="M0,0 L10,5 L0,10 z" />
          </marker>
        </defs>
        {info.triggerStep && (
          <g class="trigger">
            <rect x={pill.x} y={pill.y} width={pill.w} height={pill.h} rx={pill.h / 2} />
            <text x={pill.x + pill.w / 2} y={pill.y + 19} text-anchor="middle" class="d-name">
              {info.triggerStep}
            </text>
            <text x={pill.x + pill.w / 2} y={pill.y + 35} text-anchor="middle" class="d-sub">
              trigger
            </text>
            <path class="edge" marker-end="url(#arrow)" d={edgePath(pill, entry, vertical)} />
          </g>
        )}
        {info.stages.flatMap((s) => s.next.map((t) => <path class="edge" marker-end="url(#arrow)" d={edgePath(pos.get(s.name)!, pos.get(t)!, vertical)} />))}
        {info.stages.map((s) => {
          const p = pos.get(s.name)!;
          const st = stages.find((x) => x.name === s.name);
          const rate = rates.get(s.name) ?? null;
          const backlog = st ? st.lag + st.pending : 0;
          // A non-retryable failure counts in both `failed` and `deadLettered`: shown side by side, never added.
          const failed = st?.failed ?? 0;
          const dead = st?.deadLettered ?? 0;
          const errors = failed + dead;
          return (
            <g class={`box${errors > 0 ? " bad" : backlog > 0 ? " busy" : ""}`} data-stage={s.name}>
              <title>{`${s.name}: ${rate === null ? "measuring" : formatNumber(rate) + "/s"} over the last ${WINDOW_MS / 1000} s; backlog ${backlog} (lag ${st?.lag ?? 0}, pending ${st?.pending ?? 0}); failed ${st?.failed ?? 0}, dead-lettered ${st?.deadLettered ?? 0}`}</title>
              <rect x={p.x} y={p.y} width={BOX.w} height={BOX.h} rx="8" />
              <text x={p.x + 10} y={p.y + 20} class="d-name">
                {s.name}
              </text>
              <text x={p.x + 10} y={p.y + 46} class="d-rate">
                {rate === null ? "–" : formatNumber(rate)}
                <tspan class="d-sub"> /s</tspan>
              </text>
              <text x={p.x + 10} y={p.y + 68} class="d-sub">
                backlog <tspan class="d-backlog">{formatNumber(backlog)}</tspan>
              </text>
              <text x={p.x + 10} y={p.y + 88} class={errors > 0 ? "d-sub d-bad" : "d-sub"}>
                failed <tspan class="d-errors">{formatNumber(failed)}</tspan> · dead <tspan class="d-dead">{formatNumber(dead)}</tspan>
              </text>
            </g>
          );
        })}
      </svg>
      <p class="sub">
        Boxes and arrows: the stages and their next stages (GET /v1/pipeline). On each box: items processed per second over the last {WINDOW_MS / 1000} s; backlog = entries not yet delivered + delivered but not acked; failed = handler
        failures (each attempt, retried or not), dead = entries moved to dead letters, both since the counters began.
      </p>
    </div>
  );
}

/** Flow control per stage: entries held back by a limit, waiting now, put back (all zero for a stage without limits). */
function FlowControl({ stages }: { stages: StageStats[] }) {
  return (
    <section class="panel wide" aria-labelledby="flow-h">
      <h2 id="flow-h">Flow control</h2>
      <div class="scroll-x">
        <table>
          <thead>
            <tr>
              <th scope="col">Stage</th>
              <th scope="col">throttled</th>
              <th scope="col">waiting now</th>
              <th scope="col">readmitted</th>
            </tr>
          </thead>
          <tbody>
            {stages.map((s) => (
              <tr data-stage={s.name}>
                <th scope="row">{s.name}</th>
                <td class="num throttled">{formatNumber(s.flow.throttled)}</td>
                <td class="num flow-waiting">{formatNumber(s.flow.waiting)}</td>
                <td class="num readmitted">{formatNumber(s.flow.readmitted)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <p class="sub how">
        A stage's per-key limits (concurrency, rate limit, token budget, priority lanes) hold entries back without blocking other keys: throttled = entries held back so far because their key had no room, waiting now = entries in the per-key waiting lists,
        readmitted = entries put back on the stream when their key had room again. Waiting spends no delivery attempt. All zero for a stage without limits; summed over hosts and partitions.
      </p>
    </section>
  );
}

/** The histogram bucket [lower, upper] (ms) a percentile estimate falls in. */
export function bucketOf(buckets: StageStats["buckets"], value: number | null): [number, number | null] | null {
  if (value === null) return null;
  let lower = 0;
  for (const b of buckets) {
    if (b.le === "inf" || value <= b.le) return [lower, b.le === "inf" ? null : b.le];
    lower = b.le;
  }
  return null;
}

/** A bucket edge as written in the histogram (0.25 stays 0.25). */
const edgeText = (ms: number) => ms.toLocaleString(undefined, { maximumFractionDigits: 3 });

function Percentile({ stage, value }: { stage: StageStats; value: number | null }) {
  const range = bucketOf(stage.buckets, value);
  return (
    <>
      {formatNumber(value, 2)}
      {range && <small class="bucket"> {range[1] === null ? `(> ${edgeText(range[0])})` : `(${edgeText(range[0])}–${edgeText(range[1])})`}</small>}
    </>
  );
}

function Latency({ stages }: { stages: StageStats[] }) {
  const edges = stages[0]?.buckets.filter((b) => b.le !== "inf").map((b) => b.le as number) ?? [];
  return (
    <section class="panel wide" aria-labelledby="lat-h">
      <h2 id="lat-h">Handler latency</h2>
      <div class="scroll-x">
        <table>
          <thead>
            <tr>
              <th scope="col">Stage</th>
              <th scope="col">p50 ms</th>
              <th scope="col">p99 ms</th>
              <th scope="col">mean ms</th>
              <th scope="col">samples</th>
            </tr>
          </thead>
          <tbody>
            {stages.map((s) => (
              <tr data-stage={s.name}>
                <th scope="row">{s.name}</th>
                <td class="num p50">
                  <Percentile stage={s} value={s.latencyMs.p50} />
                </td>
                <td class="num p99">
                  <Percentile stage={s} value={s.latencyMs.p99} />
                </td>
                <td class="num">{s.latencyMs.count ? formatNumber(s.latencyMs.sum / s.latencyMs.count, 2) : "–"}</td>
                <td class="num">{formatNumber(s.latencyMs.count)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <p class="sub how">
        How these are computed: each handler time is counted in a histogram bucket ({edges.length + 1} buckets, edges {edges.slice(0, 5).map(edgeText).join(", ")} … {edgeText(edges[edges.length - 1])} ms). A percentile is estimated by finding the bucket that holds its rank and
        interpolating linearly inside it, so the true value lies in the bucket shown in brackets. The mean is exact (sum / count). All since the counters began, summed over hosts and partitions.
      </p>
      <h3>p99 per stage</h3>
      <Bars label="p99 handler latency per stage" unit=" ms" rows={stages.map((s) => ({ name: s.name, value: s.latencyMs.p99 ?? 0 }))} />
    </section>
  );
}

/** Runs waiting on time or on an event, and the pipeline's schedules with their next tick. */
function Durable({ stats }: { stats: Stats }) {
  const { delayed, parked, schedules } = stats.durable;
  return (
    <section class="panel wide durable-panel" aria-labelledby="durable-h">
      <h2 id="durable-h">Waiting runs and schedules</h2>
      <dl class="facts">
        <div>
          <dt>Parked (waiting for an event)</dt>
          <dd class="parked">{formatNumber(parked)}</dd>
        </div>
        <div>
          <dt>Delayed</dt>
          <dd class="delayed">{formatNumber(delayed)}</dd>
        </div>
        <div>
          <dt>Schedules</dt>
          <dd class="schedules">{formatNumber(schedules.length)}</dd>
        </div>
      </dl>
      {schedules.length > 0 ? (
        <ul class="schedule-list">
          {schedules.map((s) => (
            <li data-schedule={s.name}>
              <strong>{s.name}</strong> <code>{s.cron}</code> next {s.next ? new Date(s.next).toLocaleString() : "never"}
            </li>
          ))}
        </ul>
      ) : (
        <p class="sub">This pipeline declares no cron schedules (definePipeline schedules).</p>
      )}
    </section>
  );
}

function ToolCache({ stats, news }: { stats: Stats; news: boolean }) {
  const { hits, misses } = stats.toolCache;
  const lookups = hits + misses;
  const showFanout = news || stats.fanout.deliveries > 0;
  return (
    <section class="panel" aria-labelledby="cache-h">
      <h2 id="cache-h">{showFanout ? "Tool cache & fan-out" : "Tool cache"}</h2>
      <div class="row center">
        <Ring ratio={lookups ? hits / lookups : null} label="Tool-cache hit ratio" />
        <dl class="facts">
          <div>
            <dt>Cache hits</dt>
            <dd>{formatNumber(hits)}</dd>
          </div>
          <div>
            <dt>Cache misses</dt>
            <dd>{formatNumber(misses)}</dd>
          </div>
          {showFanout && (
            <div>
              <dt>Feed deliveries</dt>
              <dd>{formatNumber(stats.fanout.deliveries)}</dd>
            </div>
          )}
        </dl>
      </div>
      {lookups === 0 ? (
        <p class="sub cache-empty">
          No tool-cache lookups yet, so there is no hit ratio to show. A stage counts a hit or a miss each time it calls a tool through the tool cache (<code>cachedTool</code>, functions/tools/cache.ts); no stage of this
          pipeline has done so since the counters began.
          {news && " In the news app the cache serves the enricher (ENRICH_CACHE=on), the LLM classifier (when an LLM is configured) and RSS fetches (FEED_URLS); all are off by default."}
        </p>
      ) : (
        <p class="sub">Hit ratio: hits / (hits + misses) over all tool calls since the counters began.</p>
      )}
    </section>
  );
}

function DeadLetters({ onRedriven }: { onRedriven: () => void }) {
  const [items, setItems] = useState<DeadLetter[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [message, setMessage] = useState("");
  const [busy, setBusy] = useState<string | null>(null);

  const load = () =>
    getDeadLetters(50)
      .then((d) => {
        setItems(d.items);
        setError(null);
      })
      .catch(setError);

  useEffect(() => {
    void load();
    const timer = setInterval(load, 5000);
    return () => clearInterval(timer);
  }, []);

  const stages = [...new Set((items ?? []).map((d) => d.stage))];
  const redriveStage = async (stage: string) => {
    setBusy(stage);
    try {
      const { redriven } = await redrive(stage);
      setMessage(`Redrove ${redriven} ${stage} dead letter${redriven === 1 ? "" : "s"}.`);
      await load();
      onRedriven();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(null);
    }
  };

  return (
    <section class="panel wide" aria-labelledby="dlq-h">
      <h2 id="dlq-h">Dead letters</h2>
      <p role="status" class="meta">
        {message}
      </p>
      <ErrorBox error={error} />
      {items?.length === 0 && <p class="empty">No dead letters.</p>}
      {stages.length > 0 && (
        <div class="row">
          {stages.map((stage) => (
            <button type="button" onClick={() => void redriveStage(stage)} disabled={busy !== null}>
              Redrive {stage} ({items!.filter((d) => d.stage === stage).length})
            </button>
          ))}
        </div>
      )}
      {items && items.length > 0 && (
        <div class="scroll-x">
          <table>
            <thead>
              <tr>
                <th scope="col">Stage</th>
                <th scope="col">Entry</th>
                <th scope="col">Attempts</th>
                <th scope="col">Error</th>
              </tr>
            </thead>
            <tbody>
              {items.map((d) => (
                <tr>
                  <td>{d.stage}</td>
                  <td>
                    <code>{d.id}</code>
                  </td>
                  <td class="num">{d.attempts}</td>
                  <td>{d.error}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

export function DashboardPage({ info }: { info: PipelineInfo }) {
  const [samples, setSamples] = useState<Sample[]>([]);
  const [error, setError] = useState<unknown>(null);
  const peaks = useRef(new Map<string, number>());

  const poll = async () => {
    try {
      const stats = await getStats();
      setError(null);
      setSamples((prev) => [...prev, { t: Date.now(), stats }].slice(-HISTORY));
    } catch (err) {
      setError(err);
    }
  };

  useEffect(() => {
    void poll();
    const timer = setInterval(poll, POLL_MS);
    return () => clearInterval(timer);
  }, []);

  const latest = samples[samples.length - 1]?.stats;
  if (!latest) return <section class="panel">{error ? <ErrorBox error={error} /> : <p class="meta">Loading stats…</p>}</section>;

  const rates = new Map(latest.stages.map((s) => [s.name, windowRate(samples, s.name)]));
  return (
    <div class="grid">
      <ErrorBox error={error} />
      <section class="panel wide" aria-labelledby="diagram-h">
        <h2 id="diagram-h">
          Pipeline <code>{info.name}</code>
        </h2>
        <PipelineDiagram info={info} stages={latest.stages} rates={rates} />
      </section>
      <section class="panel wide" aria-labelledby="tp-h" data-samples={samples.length}>
        <h2 id="tp-h">Throughput per stage</h2>
        <div class="stage-cards">
          {latest.stages.map((s) => {
            const series = throughputSeries(samples, s.name).slice(-SPARK_POINTS);
            const now = rates.get(s.name) ?? null;
            // A fixed window of points (zeros before the page opened), so the time axis does not stretch.
            const points = [...new Array<number>(Math.max(0, SPARK_POINTS - series.length)).fill(0), ...series];
            const peak = Math.max(peaks.current.get(s.name) ?? 0, ...series);
            peaks.current.set(s.name, peak);
            return (
              <div class="stage-card" data-stage={s.name}>
                <h3>{s.name}</h3>
                <p class="big">
                  <span class="rate">{now === null ? "–" : formatNumber(now)}</span>/s
                </p>
                <Sparkline values={points} label={`${s.name} throughput, ${WINDOW_MS / 1000} s windowed rate at each of the last ${SPARK_POINTS} polls`} />
                <p class="sub">
                  processed <span class="processed">{formatNumber(s.processed)}</span> · peak <span class="peak">{formatNumber(peak)}</span>/s
                  {s.failed > 0 && ` · failed ${formatNumber(s.failed)}`}
                  {s.retried > 0 && ` · retried ${formatNumber(s.retried)}`}
                </p>
              </div>
            );
          })}
        </div>
        <p class="sub">
          Each rate is the growth of the stage's processed counter over the last {WINDOW_MS / 1000} s (polled every {POLL_MS / 1000} s){samples.length < 2 ? "; measuring…" : "."} The line shows that rate at each poll of the last {SPARK_POINTS}.
        </p>
      </section>
      <div class="wide pair">
        <section class="panel" aria-labelledby="backlog-h">
          <h2 id="backlog-h">Backlog</h2>
          <Bars
            label="Backlog per stage (undelivered + pending)"
            rows={latest.stages.map((s) => ({ name: s.name, value: s.lag + s.pending, extra: <span class="sub"> waiting · lag {formatNumber(s.lag)} · pending {formatNumber(s.pending)} · stream {formatNumber(s.streamLength)}</span> }))}
          />
        </section>
        <ToolCache stats={latest} news={info.apps.includes("news")} />
      </div>
      <Durable stats={latest} />
      <Latency stages={latest.stages} />
      <FlowControl stages={latest.stages} />
      <DeadLetters onRedriven={() => void poll()} />
    </div>
  );
}
