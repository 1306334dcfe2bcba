/**
 * Pipeline dashboard, live from GET /v1/stats: per-stage throughput (deltas of
 * `processed` between polls), backlog and lag, p50/p99 handler latency, tool
 * cache hit ratio, fan-out deliveries, and dead letters with a redrive button.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { getDeadLetters, getStats, redrive, type DeadLetter, type Stats } from "../api";
import { Bars, ErrorBox, formatNumber, Ring, Sparkline } from "../ui";

const POLL_MS = 1000;
const HISTORY = 60;

interface Sample {
  t: number;
  stats: Stats;
}

/** Per-stage rates (items/s) between consecutive samples. */
export function throughputSeries(samples: Sample[], stage: string): number[] {
  const rates: number[] = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1];
    const b = samples[i];
    const pa = a.stats.stages.find((s) => s.name === stage)?.processed ?? 0;
    const pb = b.stats.stages.find((s) => s.name === stage)?.processed ?? 0;
    const dt = (b.t - a.t) / 1000;
    rates.push(dt > 0 ? Math.max(0, pb - pa) / dt : 0);
  }
  return rates;
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

export function DashboardPage() {
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

  const hits = latest.toolCache.hits;
  const lookups = hits + latest.toolCache.misses;
  return (
    <div class="grid">
      <ErrorBox error={error} />
      <section class="panel wide" aria-labelledby="tp-h" data-samples={samples.length}>
        <h2 id="tp-h">Throughput per stage</h2>
        <div class="stage-cards">
          {latest.stages.map((s) => {
            const series = throughputSeries(samples, s.name);
            const now = series[series.length - 1] ?? 0;
            // A fixed 60-sample window (zeros before the page opened), so the time axis does not stretch.
            const window = [...new Array<number>(Math.max(0, HISTORY - 1 - series.length)).fill(0), ...series];
            const peak = Math.max(peaks.current.get(s.name) ?? 0, ...series);
            peaks.current.set(s.name, peak);
            return (
              <div class="stage-card" data-stage={s.name}>
                <h3>{s.name}</h3>
                <p class="big">
                  <span class="rate">{formatNumber(now)}</span>/s
                </p>
                <Sparkline values={window} label={`${s.name} throughput over the last ${HISTORY} polls`} />
                <p class="sub">
                  processed <span class="processed">{formatNumber(s.processed)}</span> · peak <span class="peak">{formatNumber(peak)}</span>/s
                  {s.failed > 0 && ` · failed ${formatNumber(s.failed)}`}
                  {s.retried > 0 && ` · retried ${formatNumber(s.retried)}`}
                </p>
              </div>
            );
          })}
        </div>
      </section>
      <section class="panel" aria-labelledby="backlog-h">
        <h2 id="backlog-h">Backlog</h2>
        <Bars
          label="Backlog per stage (undelivered + pending)"
          rows={latest.stages.map((s) => ({ name: s.name, value: s.lag + s.pending, extra: <span class="sub"> waiting · lag {formatNumber(s.lag)} · pending {formatNumber(s.pending)} · stream {formatNumber(s.streamLength)}</span> }))}
        />
      </section>
      <section class="panel" aria-labelledby="lat-h">
        <h2 id="lat-h">Handler latency</h2>
        <div class="scroll-x">
          <table>
            <thead>
              <tr>
                <th scope="col">Stage</th>
                <th scope="col">p50 ms</th>
                <th scope="col">p99 ms</th>
              </tr>
            </thead>
            <tbody>
              {latest.stages.map((s) => (
                <tr>
                  <th scope="row">{s.name}</th>
                  <td class="num">{formatNumber(s.latencyMs.p50, 2)}</td>
                  <td class="num">{formatNumber(s.latencyMs.p99, 2)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <h3>p99 per stage</h3>
        <Bars label="p99 handler latency per stage" unit=" ms" rows={latest.stages.map((s) => ({ name: s.name, value: s.latencyMs.p99 ?? 0 }))} />
      </section>
      <section class="panel" aria-labelledby="cache-h">
        <h2 id="cache-h">Tool cache &amp; fan-out</h2>
        <div class="row center">
          <Ring ratio={lookups ? hits / lookups : null} label="Tool-cache hit ratio" />
          <dl class="facts">
            <div>
              <dt>Cache hits</dt>
              <dd>{formatNumber(hits)}</dd>
            </div>
            <div>
              <dt>Cache misses</dt>
              <dd>{formatNumber(latest.toolCache.misses)}</dd>
            </div>
            <div>
              <dt>Feed deliveries</dt>
              <dd>{formatNumber(latest.fanout.deliveries)}</dd>
            </div>
          </dl>
        </div>
      </section>
      <DeadLetters onRedriven={() => void poll()} />
    </div>
  );
}
