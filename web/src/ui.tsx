/** Small shared pieces: article cards, error boxes, and the SVG charts. */
import type { ComponentChildren } from "preact";
import { errorText, type FeedItem } from "./api";

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      {errorText(error)}
    </p>
  );
}

export function href(...parts: string[]): string {
  return "#/" + parts.map(encodeURIComponent).join("/");
}

function when(iso?: string): string | null {
  if (!iso) return null;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** One article as feeds and topic pages show it. */
export function ArticleCard({ item, isNew = false }: { item: FeedItem; isNew?: boolean }) {
  const published = when(item.publishedAt);
  return (
    <article class={isNew ? "card new" : "card"} data-feed-id={item.id}>
      <h3>
        {item.url ? (
          <a href={item.url} target="_blank" rel="noopener noreferrer">
            {item.title}
          </a>
        ) : (
          item.title
        )}
      </h3>
      <p class="meta">
        <a class="chip small" href={href("topics", item.topic)}>
          {item.topic}
        </a>
        {item.source && <span>{item.source}</span>}
        {published && <time dateTime={item.publishedAt}>{published}</time>}
      </p>
      {item.summary && <p class="summary">{item.summary}</p>}
      <p class="meta">
        {item.keywords.length > 0 && <span class="keywords">{item.keywords.slice(0, 6).join(" · ")}</span>}
        {item.runId && (
          <a class="run-link" href={href("runs", item.runId)} title="Inspect the pipeline run of this article">
            run {item.runId.slice(0, 10)}
          </a>
        )}
      </p>
    </article>
  );
}

/** A line chart of the last values (own SVG: a polyline and its area). */
export function Sparkline({ values, label, width = 220, height = 48 }: { values: number[]; label: string; width?: number; height?: number }) {
  const max = Math.max(1e-9, ...values);
  const n = Math.max(2, values.length);
  const pts = values.map((v, i) => `${((i / (n - 1)) * width).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  return (
    <svg class="spark" viewBox={`0 0 ${width} ${height}`} width="100%" height={height} role="img" aria-label={label} preserveAspectRatio="none">
      <title>{label}</title>
      {values.length > 1 && <polygon class="area" points={`0,${height} ${pts.join(" ")} ${((values.length - 1) / (n - 1)) * width},${height}`} />}
      {values.length > 1 && <polyline class="line" points={pts.join(" ")} />}
    </svg>
  );
}

/** Horizontal bars, one per row, scaled to the largest value. */
export function Bars({ rows, label, unit = "" }: { rows: Array<{ name: string; value: number; extra?: ComponentChildren }>; label: string; unit?: string }) {
  const max = Math.max(1, ...rows.map((r) => r.value));
  return (
    <div class="bars" role="list" aria-label={label}>
      {rows.map((r) => (
        <div class="bar-row" role="listitem">
          <span class="bar-name">{r.name}</span>
          <svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">
            <rect x="0" y="0" width={(r.value / max) * 100} height="10" />
          </svg>
          <span class="bar-value">
            {formatNumber(r.value)}
            {unit}
            {r.extra}
          </span>
        </div>
      ))}
    </div>
  );
}

/** A ring showing a ratio 0..1 (tool-cache hit ratio). */
export function Ring({ ratio, label }: { ratio: number | null; label: string }) {
  const r = 15.9155; // circumference 100
  const pct = ratio === null ? 0 : Math.round(ratio * 1000) / 10;
  return (
    <svg class="ring" viewBox="0 0 36 36" width="96" height="96" role="img" aria-label={`${label}: ${ratio === null ? "no data" : pct + "%"}`}>
      <circle class="ring-bg" cx="18" cy="18" r={r} />
      <circle class="ring-fg" cx="18" cy="18" r={r} stroke-dasharray={`${pct} ${100 - pct}`} stroke-dashoffset="25" />
      <text x="18" y="20.5" text-anchor="middle">
        {ratio === null ? "–" : `${Math.round(pct)}%`}
      </text>
    </svg>
  );
}

export function formatNumber(n: number | null | undefined, digits = 1): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "–";
  if (Number.isInteger(n)) return n.toLocaleString();
  return n.toFixed(digits);
}

/** "4 s ago", "3 min ago": the age of an epoch-ms time, relative to `now`. */
export function formatAge(at: number, now = Date.now()): string {
  const s = Math.max(0, (now - at) / 1000);
  if (s < 1) return "just now";
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

/** A duration in ms as "850 ms", "4.2 s", "3.1 min". */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${formatNumber(Math.round(ms * 10) / 10)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

/** Axis ticks from 0 at a 1/2/5 x 10^k step, about `count` of them, the last one at or past `span`. */
export function niceTicks(span: number, count = 5): number[] {
  if (!(span > 0)) return [0];
  const raw = span / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((m) => m >= raw) ?? 10 * pow;
  const ticks = [0];
  while (ticks[ticks.length - 1] < span - step * 1e-9) ticks.push(Math.round(ticks.length * step * 1e6) / 1e6);
  return ticks;
}
