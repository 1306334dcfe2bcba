/**
 * A small cron parser: the five standard fields (minute, hour, day of month,
 * month, day of week), evaluated in UTC as Workers cron triggers are. Each
 * field takes `*`, numbers, ranges `a-b`, lists `a,b`, steps `* /n` and
 * `a-b/n` (written without the space), and month/day names (`jan`, `mon`);
 * day of week 0-7 (0 and 7 are Sunday). As in Vixie cron, when both day of
 * month and day of week are restricted, a day matching either one matches.
 * @example
 * const every15 = parseCron("*\/15 * * * *");
 * every15.next(Date.UTC(2026, 0, 1, 10, 7)); // 10:15 that day, epoch ms
 */

export interface Cron {
  /** The expression as given. */
  source: string;
  /** True when the minute starting at `ms` (epoch ms, seconds ignored) is a tick. */
  matches(ms: number): boolean;
  /** The first tick strictly after `ms`, epoch ms (null when none within 5 years, e.g. Feb 30). */
  next(ms: number): number | null;
  /** Ticks in (fromMs, toMs], oldest first, at most `limit` (the newest ones). */
  ticksBetween(fromMs: number, toMs: number, limit?: number): number[];
}

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: string[];
  /** Value of names[0]. */
  namesFrom?: number;
}

const FIELDS: FieldSpec[] = [
  { name: "minute", min: 0, max: 59 },
  { name: "hour", min: 0, max: 23 },
  { name: "day of month", min: 1, max: 31 },
  { name: "month", min: 1, max: 12, names: MONTHS, namesFrom: 1 },
  { name: "day of week", min: 0, max: 7, names: DAYS, namesFrom: 0 },
];

const MINUTE = 60_000;

function parseValue(text: string, spec: FieldSpec): number {
  const lower = text.toLowerCase();
  const named = spec.names?.indexOf(lower) ?? -1;
  if (named >= 0) return named + (spec.namesFrom ?? 0);
  if (!/^\d{1,2}$/.test(text)) throw new Error(`${spec.name}: ${JSON.stringify(text)} is not a number${spec.names ? " or a name" : ""}`);
  const n = Number(text);
  if (n < spec.min || n > spec.max) throw new Error(`${spec.name}: ${n} is outside ${spec.min}-${spec.max}`);
  return n;
}

/** The set of values a field allows, and whether it was `*` (unrestricted). */
function parseField(text: string, spec: FieldSpec): { allowed: Set<number>; any: boolean } {
  const allowed = new Set<number>();
  let any = false;
  for (const part of text.split(",")) {
    const [range, stepText, extra] = part.split("/");
    if (extra !== undefined || range === "") throw new Error(`${spec.name}: ${JSON.stringify(part)} is malformed`);
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d{1,2}$/.test(stepText) || Number(stepText) < 1) throw new Error(`${spec.name}: step ${JSON.stringify(stepText)} must be a positive number`);
      step = Number(stepText);
    }
    let from: number;
    let to: number;
    if (range === "*") {
      [from, to] = [spec.min, spec.max];
      if (stepText === undefined) any = true;
    } else if (range.includes("-")) {
      const [a, b, more] = range.split("-");
      if (more !== undefined) throw new Error(`${spec.name}: ${JSON.stringify(range)} is malformed`);
      [from, to] = [parseValue(a, spec), parseValue(b, spec)];
      if (from > to) throw new Error(`${spec.name}: range ${range} runs backwards`);
    } else {
      from = parseValue(range, spec);
      to = stepText === undefined ? from : spec.max;
    }
    for (let v = from; v <= to; v += step) allowed.add(v);
  }
  return { allowed, any };
}

/**
 * Parses a five-field cron expression; throws an Error naming the field at
 * fault. `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly` are accepted.
 */
export function parseCron(expression: string): Cron {
  const aliases: Record<string, string> = { "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *" };
  const source = expression.trim();
  const text = aliases[source.toLowerCase()] ?? source;
  const parts = text.split(/\s+/);
  if (parts.length !== 5) throw new Error(`cron ${JSON.stringify(expression)}: expected 5 fields (minute hour day-of-month month day-of-week), got ${parts.length}`);
  let fields: Array<{ allowed: Set<number>; any: boolean }>;
  try {
    fields = parts.map((p, i) => parseField(p, FIELDS[i]));
  } catch (err) {
    throw new Error(`cron ${JSON.stringify(expression)}: ${(err as Error).message}`);
  }
  const [minute, hour, dom, month, dow] = fields;
  if (dow.allowed.has(7)) dow.allowed.add(0);

  const dayMatches = (d: Date) => {
    const domOk = dom.allowed.has(d.getUTCDate());
    const dowOk = dow.allowed.has(d.getUTCDay());
    if (dom.any && dow.any) return true;
    if (dom.any) return dowOk;
    if (dow.any) return domOk;
    return domOk || dowOk;
  };
  const matches = (ms: number) => {
    const d = new Date(ms);
    return minute.allowed.has(d.getUTCMinutes()) && hour.allowed.has(d.getUTCHours()) && month.allowed.has(d.getUTCMonth() + 1) && dayMatches(d);
  };
  const next = (ms: number): number | null => {
    // Start at the next whole minute, then skip whole months, days and hours that cannot match.
    let t = Math.floor(ms / MINUTE) * MINUTE + MINUTE;
    const limit = ms + 5 * 366 * 24 * 3600 * 1000;
    while (t <= limit) {
      const d = new Date(t);
      if (!month.allowed.has(d.getUTCMonth() + 1)) {
        t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
        continue;
      }
      if (!dayMatches(d)) {
        t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1);
        continue;
      }
      if (!hour.allowed.has(d.getUTCHours())) {
        t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours() + 1);
        continue;
      }
      if (!minute.allowed.has(d.getUTCMinutes())) {
        t += MINUTE;
        continue;
      }
      return t;
    }
    return null;
  };
  const ticksBetween = (fromMs: number, toMs: number, limit = 10) => {
    const out: number[] = [];
    for (let t = next(fromMs); t !== null && t <= toMs; t = next(t)) {
      out.push(t);
      if (out.length > limit) out.shift();
    }
    return out;
  };
  return { source, matches, next, ticksBetween };
}
