/**
 * A progress bar on stderr for long CLI work (replay, measurements):
 * done/total, rate per second and ETA. Redraws in place on a terminal and
 * prints a line every few seconds otherwise (CI logs stay readable).
 */
export interface Progress {
  /** Sets the absolute count done. */
  update(done: number): void;
  /** Final line with the overall rate. */
  finish(message?: string): void;
}

function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds)) return "--";
  if (seconds < 60) return `${Math.ceil(seconds)}s`;
  return `${Math.floor(seconds / 60)}m${String(Math.ceil(seconds % 60)).padStart(2, "0")}s`;
}

/** Starts a progress bar for `total` units named `unit` (e.g. "articles"). */
export function progressBar(total: number, { label = "", unit = "items", stream = process.stderr }: { label?: string; unit?: string; stream?: NodeJS.WriteStream } = {}): Progress {
  const started = performance.now();
  const tty = Boolean(stream.isTTY);
  let last = 0;
  let lastDraw = 0;
  const draw = (final: boolean) => {
    const now = performance.now();
    if (!final && now - lastDraw < (tty ? 100 : 3000)) return;
    lastDraw = now;
    const secs = (now - started) / 1000;
    const rate = secs > 0 ? last / secs : 0;
    const pct = total > 0 ? last / total : 1;
    const width = 28;
    const filled = Math.round(pct * width);
    const bar = `${"#".repeat(filled)}${".".repeat(width - filled)}`;
    const line = `${label ? `${label} ` : ""}[${bar}] ${last}/${total} ${(pct * 100).toFixed(0).padStart(3)}%  ${rate.toFixed(0)} ${unit}/s  ETA ${formatEta(rate > 0 ? (total - last) / rate : Infinity)}`;
    stream.write(tty ? `\r${line}\x1b[K${final ? "\n" : ""}` : `${line}\n`);
  };
  return {
    update(done: number) {
      last = done;
      draw(false);
    },
    finish(message?: string) {
      draw(true);
      if (message) stream.write(`${message}\n`);
    },
  };
}
