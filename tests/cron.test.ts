/**
 * The five-field cron parser (functions/cron.ts): fields, ranges, lists,
 * steps, names, the day-of-month / day-of-week rule, next ticks across month
 * and year ends, and clear errors.
 */
import { describe, expect, it } from "vitest";
import { parseCron } from "../functions/cron";

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

describe("parseCron", () => {
  it("finds the next tick of common expressions", () => {
    expect(iso(parseCron("* * * * *").next(at("2026-01-01T10:07:30Z")))).toBe("2026-01-01T10:08:00.000Z");
    expect(iso(parseCron("*/15 * * * *").next(at("2026-01-01T10:07:00Z")))).toBe("2026-01-01T10:15:00.000Z");
    expect(iso(parseCron("*/15 * * * *").next(at("2026-01-01T10:45:00Z")))).toBe("2026-01-01T11:00:00.000Z");
    expect(iso(parseCron("0 9 * * 1-5").next(at("2026-01-02T09:00:00Z")))).toBe("2026-01-05T09:00:00.000Z"); // Fri -> Mon
    expect(iso(parseCron("30 2 1 * *").next(at("2026-01-15T00:00:00Z")))).toBe("2026-02-01T02:30:00.000Z");
    expect(iso(parseCron("0 0 1 1 *").next(at("2026-06-01T00:00:00Z")))).toBe("2027-01-01T00:00:00.000Z");
    expect(iso(parseCron("@hourly").next(at("2026-01-01T10:00:00Z")))).toBe("2026-01-01T11:00:00.000Z");
    expect(iso(parseCron("0 12 29 2 *").next(at("2026-03-01T00:00:00Z")))).toBe("2028-02-29T12:00:00.000Z");
  });

  it("takes lists, ranges with steps, names, and 7 as Sunday", () => {
    const c = parseCron("5,10-20/5 8 * jan-mar sun");
    expect(c.matches(at("2026-01-04T08:15:00Z"))).toBe(true); // a Sunday in January
    expect(c.matches(at("2026-01-04T08:12:00Z"))).toBe(false);
    expect(c.matches(at("2026-04-05T08:05:00Z"))).toBe(false); // April
    expect(parseCron("0 0 * * 7").matches(at("2026-01-04T00:00:00Z"))).toBe(true);
    expect(parseCron("0 0 * * MON").matches(at("2026-01-05T00:00:00Z"))).toBe(true);
  });

  it("matches either day field when both are restricted (Vixie cron), only the restricted one otherwise", () => {
    const both = parseCron("0 0 13 * fri");
    expect(both.matches(at("2026-02-13T00:00:00Z"))).toBe(true); // Friday the 13th
    expect(both.matches(at("2026-01-13T00:00:00Z"))).toBe(true); // a Tuesday the 13th
    expect(both.matches(at("2026-01-02T00:00:00Z"))).toBe(true); // a Friday
    expect(both.matches(at("2026-01-03T00:00:00Z"))).toBe(false);
    expect(parseCron("0 0 13 * *").matches(at("2026-01-02T00:00:00Z"))).toBe(false);
  });

  it("lists the ticks in a window, the newest ones when there are more than the limit", () => {
    const c = parseCron("* * * * *");
    expect(c.ticksBetween(at("2026-01-01T10:00:00Z"), at("2026-01-01T10:03:00Z")).map(iso)).toEqual(["2026-01-01T10:01:00.000Z", "2026-01-01T10:02:00.000Z", "2026-01-01T10:03:00.000Z"]);
    const last = c.ticksBetween(at("2026-01-01T10:00:00Z"), at("2026-01-01T11:00:00Z"), 2).map(iso);
    expect(last).toEqual(["2026-01-01T10:59:00.000Z", "2026-01-01T11:00:00.000Z"]);
    expect(parseCron("0 0 30 2 *").next(at("2026-01-01T00:00:00Z"))).toBeNull();
  });

  it("refuses malformed expressions, naming the field", () => {
    expect(() => parseCron("* * * *")).toThrow(/5 fields/);
    expect(() => parseCron("60 * * * *")).toThrow(/minute: 60 is outside 0-59/);
    expect(() => parseCron("* 24 * * *")).toThrow(/hour/);
    expect(() => parseCron("* * 0 * *")).toThrow(/day of month/);
    expect(() => parseCron("* * * 13 *")).toThrow(/month/);
    expect(() => parseCron("* * * * 8")).toThrow(/day of week/);
    expect(() => parseCron("*/0 * * * *")).toThrow(/step/);
    expect(() => parseCron("5-1 * * * *")).toThrow(/backwards/);
    expect(() => parseCron("a * * * *")).toThrow(/not a number/);
  });
});
