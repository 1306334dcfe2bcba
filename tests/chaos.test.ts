/**
 * The chaos suite, reduced (`npm run chaos` is the full one): one seeded run
 * with two `npm start` host processes (their CLI pre-built once with esbuild,
 * bench/chaos/host-bundle.ts: a start takes about 1 s instead of tsx's 4-5 s
 * under load) behind TCP proxies, real articles and
 * users over the public API, a kill -9 of a host and a kill -9 + restart of
 * the server on its AOF; the oracle must find nothing lost, nothing
 * duplicated, every poison article and malformed entry dead-lettered with
 * its reason, every host taking probes after each fault, and Ctrl-C of each
 * host under load exiting within 5 s. Then the feeds are broken on purpose
 * and the oracle must say so.
 */
import { describe, expect, it } from "vitest";
import { runChaos } from "../bench/chaos/harness";

describe("chaos (reduced)", () => {
  it("one seeded run with a host kill and a server kill loses nothing, duplicates nothing and stalls no host", async () => {
    const result = await runChaos({
      seed: 7,
      hosts: 2,
      fsync: "always",
      articles: 150,
      users: 50,
      faults: 2,
      sequence: ["host-kill", "server-kill"],
      stages: "in-process",
      rate: 120,
      visibilityMs: 5000,
      // The retrying poison article is dead-lettered after MAX_DELIVERIES backoffs: short ones end the drain sooner.
      retryBackoffMs: 200,
      selfTest: true,
      log: (l) => console.log(l),
    });
    const { report } = result;
    console.log(`[chaos] ${report.runs} runs, ${report.feedEntries} feed entries, faults: ${result.faults.map((f) => `${f.kind} recovered ${f.recoveryMs} ms`).join(", ")}; Ctrl-C ${result.ctrlCMs.map((m) => Math.round(m)).join(", ")} ms; ${result.ms} ms`);
    expect(result.faults.map((f) => f.kind)).toEqual(["host-kill", "server-kill"]);
    expect(report.violations).toEqual([]);
    expect(report.lost).toBe(0);
    expect(report.duplicated).toBe(0);
    expect(report.deadLettered).toBe(0);
    expect(report.completed).toBeGreaterThanOrEqual(150);
    expect(report.feedEntries).toBeGreaterThan(0);
    expect(report.poison.deadLetteredWithReason).toBe(report.poison.injected);
    expect(report.poison.malformedDeadLettered).toBe(report.poison.malformedInjected);
    for (const f of result.faults) {
      expect(f.stalled).toEqual([]);
      expect(f.allHostsMs).toBeLessThan(30_000);
    }
    expect(result.ctrlCMs).toHaveLength(2);
    for (const ms of result.ctrlCMs) expect(ms).toBeLessThan(5000);
    // The oracle fails when a feed misses a delivery or repeats one.
    expect(result.tampered?.lost).toBe(1);
    expect(result.tampered?.duplicated).toBe(1);
  }, 240_000);
});
