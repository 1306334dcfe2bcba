/** Small numeric helpers for the benchmark. */

export interface Quantiles {
  count: number;
  p50: number | null;
  p99: number | null;
  p999: number | null;
  max: number | null;
}

/** Nearest-rank quantile of a sorted array. */
function rank(sorted: number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

const r3 = (v: number) => Math.round(v * 1000) / 1000;

/** p50/p99/p99.9/max of a sample (ms, rounded to microseconds). */
export function quantiles(values: number[]): Quantiles {
  if (values.length === 0) return { count: 0, p50: null, p99: null, p999: null, max: null };
  const sorted = Float64Array.from(values).sort();
  const arr = Array.from(sorted);
  return { count: arr.length, p50: r3(rank(arr, 0.5)), p99: r3(rank(arr, 0.99)), p999: r3(rank(arr, 0.999)), max: r3(arr[arr.length - 1]) };
}

/** Samples this process's RSS every `everyMs` until stopped; returns the peak in bytes. */
export function sampleRss(everyMs = 200): { stop(): number } {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, everyMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, process.memoryUsage.rss());
    },
  };
}

/** Progress lines on stderr (stdout carries the table). */
export function progress(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}
