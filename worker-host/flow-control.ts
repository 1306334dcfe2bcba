/**
 * Flow control of one stage (its `concurrency`, `rateLimit` and `budget`):
 * the gate a stage worker passes a batch through before dispatch, and the
 * loop that readmits parked entries. All state is in Valkey (limiters tagged
 * by their flow key, waiting lists and ready sets by partition), so limits
 * hold across hosts and restarts; only hints live here.
 *
 *   admit    per limit kind, one flow-acquire call per flow key in the batch;
 *            entries denied room are parked (flow-park.lua: XACK + waiting
 *            list + ready set), so they spend no delivery attempt and hold no
 *            batch slot, and the other keys of the batch go on.
 *   release  after the batch: concurrency slots freed (flow-release.lua),
 *            budget estimates corrected by the cost handlers reported.
 *   readmit  a loop over the partitions' ready sets (flow-ready.lua): for
 *            each due key it reserves room (flow-acquire, prefix only) and
 *            moves that many parked entries back onto the stream
 *            (flow-readmit.lua), each carrying its reservation and earlier
 *            deliveries. Keys are served in turn, so no key blocks another.
 *
 * A stage without limits gets no FlowControl at all (see flowControlFor).
 */
import { PRIORITIES, randomHex, type Envelope, type Priority, type StageItemResult } from "../functions/envelope";
import { flowKeyPart, type FlowKind, type Keys } from "../functions/keys";
import type { FlowKeyContext, FlowNumber, StageDef } from "../functions/pipeline";
import { runScript, type Connection } from "./valkey";

/** The fields of a stage worker's parsed entry that flow control uses. */
export interface FlowEntry {
  partition: number;
  id: string;
  raw: string;
  deliveries: number;
  envelope?: Envelope;
  /** "<kind>:<token>" when flow-readmit put the entry back with room reserved for it. */
  reservation?: string;
}

interface Limiter {
  kind: FlowKind;
  key: (payload: unknown, ctx: FlowKeyContext) => string;
  /** Concurrency: slots; rate/budget: bucket capacity. */
  cap: number;
  /** Concurrency: lease ms; rate/budget: refill tokens per ms. */
  param: number;
  amount: (payload: unknown, ctx: FlowKeyContext) => number;
}

/** One admitted entry's holdings, released after its batch. */
interface Held {
  entry: FlowEntry;
  /** Per limiter (same order as the stage's limiters): limiter key and amount taken. */
  taken: Array<{ limiter: string; amount: number } | undefined>;
  member: string;
}

/** The slots a batch holds in one concurrency or lanes limiter (limit `li`). */
export interface FlowSlots {
  key: string;
  members: string[];
  li: number;
}

/** Admitted entries of one batch and what they hold. */
export interface FlowTicket {
  held: Held[];
}

export interface FlowControlOptions {
  stage: string;
  keys: Keys;
  conn: Connection;
  env?: Record<string, unknown>;
  /** Concurrency slot lease; extended while the handler runs (default 30 s). */
  leaseMs?: number;
  /** Lease of room reserved for a readmitted entry until it is read again (default 60 s). */
  reserveMs?: number;
  /** A key parked for concurrency is looked at again after this long even without a release seen here (default 1 s). */
  recheckMs?: number;
  /** Longest sleep of the readmit loop (default 1 s): it also finds entries parked by other hosts. */
  sweepMs?: number;
  log?: (line: string) => void;
}

/** Figures of this host's flow control, for /health and tests. */
export interface FlowCounters {
  admitted: number;
  parked: number;
  readmitted: number;
}

/** A limit's number: a function of the settings is called once, at start; 0 or less (or none) gives `fallback`. */
const num = (v: FlowNumber | undefined, env: Record<string, unknown>, fallback: number): number => {
  const n = typeof v === "function" ? v(env) : v;
  return typeof n === "number" && Number.isFinite(n) && n > 0 ? n : fallback;
};

/** The stage's FlowControl, or undefined when it declares no limits (then nothing extra runs). */
export function flowControlFor(def: StageDef | undefined, options: FlowControlOptions): FlowControl | undefined {
  if (!def || (!def.concurrency && !def.rateLimit && !def.budget && !def.lanes)) return undefined;
  const flow = new FlowControl(def, options);
  return flow.limiters.length > 0 ? flow : undefined;
}

export class FlowControl {
  readonly limiters: Limiter[];
  readonly counters: FlowCounters = { admitted: 0, parked: 0, readmitted: 0 };
  private readonly o: Required<FlowControlOptions>;
  /** Admitted batches holding concurrency or lane slots, until released (their leases are extended). */
  private readonly inFlight = new Set<FlowTicket>();
  /** Limiter keys per limit, by flow key. */
  private readonly limiterKeys: Array<Map<string, string>>;
  /** The stage has a concurrency or lanes limit (slots to free after each batch). */
  readonly slotLimiters: boolean;
  /** Ready members whose room this host just freed, per partition-independent member: looked at first. */
  private readonly forced = new Set<string>();
  private running = false;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private kicked = false;
  private extendTimer: ReturnType<typeof setInterval> | undefined;
  /** Parked entries were seen lately (here or by a sweep): releases then kick the readmit loop. */
  private busyUntil = 0;

  constructor(private readonly def: StageDef, options: FlowControlOptions) {
    this.o = { leaseMs: 30_000, reserveMs: 60_000, recheckMs: 1000, sweepMs: 1000, log: () => {}, ...options, env: options.env ?? {} };
    const env = this.o.env;
    const one = () => 1;
    const limiters: Limiter[] = [];
    // A limit whose number resolves to 0 is off (e.g. a budget only with an LLM configured).
    const off = (v: FlowNumber | undefined) => v !== undefined && num(v, env, 0) === 0;
    if (def.concurrency && !off(def.concurrency.limit)) {
      limiters.push({ kind: "concurrency", key: def.concurrency.key, cap: Math.floor(num(def.concurrency.limit, env, 1)), param: this.o.leaseMs, amount: one });
    }
    if (def.rateLimit && !off(def.rateLimit.perSecond)) {
      const perSecond = num(def.rateLimit.perSecond, env, 1);
      limiters.push({ kind: "rate", key: def.rateLimit.key, cap: num(def.rateLimit.burst, env, Math.max(1, perSecond)), param: perSecond / 1000, amount: one });
    }
    if (def.budget && !off(def.budget.tokensPerMinute)) {
      const perMinute = num(def.budget.tokensPerMinute, env, 1);
      const estimate = def.budget.estimate;
      limiters.push({
        kind: "budget",
        key: def.budget.key,
        cap: num(def.budget.burst, env, perMinute),
        param: perMinute / 60_000,
        amount: (payload, ctx) => {
          const n = Number(estimate(payload, ctx));
          return Number.isFinite(n) && n > 0 ? n : 0;
        },
      });
    }
    if (def.lanes && !off(def.lanes.limit)) {
      const w = def.lanes.weights ?? { high: 8, normal: 2, low: 1 };
      this.weights = { high: Math.max(0, w.high), normal: Math.max(0, w.normal), low: Math.max(0, w.low) };
      limiters.push({ kind: "lanes", key: () => "all", cap: Math.floor(num(def.lanes.limit, env, 1)), param: this.o.leaseMs, amount: one });
    }
    this.limiters = limiters;
    this.limiterKeys = limiters.map(() => new Map());
    this.slotLimiters = limiters.some((l) => holdsSlots(l.kind));
  }

  /** Lane weights of a stage with `lanes`. */
  private weights: Record<Priority, number> = { high: 8, normal: 2, low: 1 };
  /** Smooth weighted round-robin credit per lane (which lane the next freed slot goes to). */
  private readonly credit: Record<Priority, number> = { high: 0, normal: 0, low: 0 };

  /** Starts the readmit loop and the lease extension. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.readmitLoop();
    this.extendTimer = setInterval(() => void this.extendLeases(), Math.max(50, Math.floor(this.o.leaseMs / 3)));
    this.extendTimer.unref?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.extendTimer);
    this.wake?.();
    await this.loop;
  }

  /** Flow key, member and amount of one entry for one limiter; undefined when its payload does not parse (the handler dead-letters it). */
  private context(e: FlowEntry): { payload: unknown; ctx: FlowKeyContext } | undefined {
    const env = e.envelope!;
    const parsed = this.def.input.safeParse(env.payload);
    if (!parsed.success) return undefined;
    return { payload: parsed.data, ctx: { runId: env.runId, stage: this.o.stage, env: this.o.env } };
  }

  /** Limiter key of one limit and flow key (cached: it is built for every entry of every batch). */
  private limiterKey(li: number, flowKey: string): string {
    const cache = this.limiterKeys[li];
    let key = cache.get(flowKey);
    if (key === undefined) {
      if (cache.size >= 4096) cache.clear();
      key = this.o.keys.flowLimiter(this.o.stage, this.limiters[li].kind, flowKey);
      cache.set(flowKey, key);
    }
    return key;
  }

  /**
   * Lets through the entries that have room under every limit and parks the
   * rest. Entries whose payload or key function fails pass unlimited (the
   * handler rejects an invalid payload; a throwing key is reported once here).
   * The ticket's `held` is in the order of `admitted`.
   */
  async admit(entries: FlowEntry[]): Promise<{ admitted: FlowEntry[]; ticket: FlowTicket }> {
    const { stage } = this.o;
    const now = Date.now();
    const held: Held[] = [];
    const admitted: FlowEntry[] = [];
    // Entries whose limits are checked, with their parsed payloads and contexts (parallel arrays).
    let live: Held[] = [];
    let payloads: unknown[] = [];
    let ctxs: FlowKeyContext[] = [];
    for (let k = 0; k < entries.length; k++) {
      const entry = entries[k];
      const h: Held = { entry, taken: [], member: memberOf(entry.envelope!) };
      const c = this.context(entry);
      if (!c) {
        admitted.push(entry);
        held.push(h);
        continue;
      }
      live.push(h);
      payloads.push(c.payload);
      ctxs.push(c.ctx);
    }
    const allLive = live;
    const allPayloads = payloads;
    const allCtxs = ctxs;
    const park: Array<{ h: Held; kind: FlowKind; flowKey: string; dueAt: number }> = [];
    for (let li = 0; li < this.limiters.length && live.length > 0; li++) {
      const lim = this.limiters[li];
      // Groups by limiter key; `at` maps the limiter key to its group, one small object per key per batch.
      const groups: Array<{ limiter: string; flowKey: string; items: Held[]; amounts: number[] }> = [];
      const at = new Map<string, number>();
      for (let k = 0; k < live.length; k++) {
        let flowKey: string;
        let amount: number;
        try {
          flowKey = String(lim.key(payloads[k], ctxs[k]));
          amount = lim.amount(payloads[k], ctxs[k]);
        } catch (err) {
          this.o.log(`[${stage}] ${lim.kind} key/estimate failed for run ${ctxs[k].runId} (let through unlimited): ${(err as Error).message}`);
          continue;
        }
        const limiter = this.limiterKey(li, flowKey);
        let gi = at.get(limiter);
        if (gi === undefined) {
          gi = groups.length;
          at.set(limiter, gi);
          groups.push({ limiter, flowKey, items: [], amounts: [] });
        }
        groups[gi].items.push(live[k]);
        groups[gi].amounts.push(amount);
      }
      if (groups.length === 0) continue;
      const replies = await this.acquireGroups(lim, groups, now);
      let denied: Set<Held> | undefined;
      for (let gi = 0; gi < groups.length; gi++) {
        const g = groups[gi];
        const [flags, waitMs] = replies[gi];
        for (let k = 0; k < g.items.length; k++) {
          const h = g.items[k];
          if (Number(flags[k]) === 1) h.taken[li] = { limiter: g.limiter, amount: g.amounts[k] };
          else {
            (denied ??= new Set()).add(h);
            const dueAt = holdsSlots(lim.kind) ? now + this.o.recheckMs : now + Math.max(1, Number(waitMs));
            // Lanes park by the run's priority; the other limits by their flow key.
            park.push({ h, kind: lim.kind, flowKey: lim.kind === "lanes" ? (h.entry.envelope!.priority ?? "normal") : g.flowKey, dueAt });
          }
        }
      }
      if (denied) {
        const keep: Held[] = [];
        const keepPayloads: unknown[] = [];
        const keepCtxs: FlowKeyContext[] = [];
        for (let k = 0; k < live.length; k++) {
          if (denied.has(live[k])) continue;
          keep.push(live[k]);
          keepPayloads.push(payloads[k]);
          keepCtxs.push(ctxs[k]);
        }
        live = keep;
        payloads = keepPayloads;
        ctxs = keepCtxs;
      }
    }
    for (let k = 0; k < live.length; k++) {
      admitted.push(live[k].entry);
      held.push(live[k]);
    }
    if (park.length > 0) {
      const ctxOf = new Map<Held, { payload: unknown; ctx: FlowKeyContext }>();
      for (let k = 0; k < allLive.length; k++) ctxOf.set(allLive[k], { payload: allPayloads[k], ctx: allCtxs[k] });
      // What the parked entries took under earlier limits goes back first.
      await this.giveBack(park.map((p) => p.h), () => undefined);
      await this.dropReservations(park.map((p) => p.h), ctxOf);
      await this.park(park);
    }
    const ticket: FlowTicket = { held };
    // Tickets holding slots are in flight until released: their leases are extended meanwhile.
    if (this.slotLimiters && held.length > 0) this.inFlight.add(ticket);
    this.counters.admitted += admitted.length;
    return { admitted, ticket };
  }

  /**
   * The concurrency and lane slots a ticket holds, per limiter key: what
   * release() frees. A stage worker whose commit can carry them (the limiters
   * share the commit's slot, see Keys.flowLimiter) frees them there and tells
   * release() so.
   */
  slotsOf(ticket: FlowTicket): FlowSlots[] {
    const out: FlowSlots[] = [];
    if (!this.slotLimiters) return out;
    for (let k = 0; k < ticket.held.length; k++) {
      const h = ticket.held[k];
      for (let li = 0; li < h.taken.length; li++) {
        const t = h.taken[li];
        if (!t || !holdsSlots(this.limiters[li].kind)) continue;
        let g: FlowSlots | undefined;
        for (let j = 0; j < out.length; j++) if (out[j].key === t.limiter) g = out[j];
        if (!g) out.push((g = { key: t.limiter, members: [], li }));
        g.members.push(h.member);
      }
    }
    return out;
  }

  /**
   * For a commit in partition `p` that frees `slots`: while parked entries
   * were seen lately, what the commit needs to readmit entries waiting for
   * the same concurrency keys into the room it frees (commit-stage.lua), so
   * a waiting key's next entries do not wait for a readmit pass.
   */
  readmitSpec(slot: FlowSlots, p: number): { waitKey: string; readyKey: string; readyMember: string; limit: number; reserveMs: number } | undefined {
    const lim = this.limiters[slot.li];
    if (lim.kind !== "concurrency" || Date.now() >= this.busyUntil) return undefined;
    const { keys, stage } = this.o;
    const readyMember = `concurrency:${slot.key.slice(slot.key.lastIndexOf(":") + 1)}`;
    return { waitKey: keys.flowWaitingPrefix(stage, p) + readyMember, readyKey: keys.flowReady(stage, p), readyMember, limit: lim.cap, reserveMs: this.o.reserveMs };
  }

  /**
   * Frees the batch's concurrency slots (unless `slotsFreed`: the commit
   * freed them) and corrects budget estimates by the costs reported.
   * `results` is in the order of the ticket's entries (empty when none ran).
   */
  async release(ticket: FlowTicket, results: ReadonlyArray<StageItemResult | undefined>, slotsFreed = false): Promise<void> {
    this.inFlight.delete(ticket);
    const freed = await this.giveBack(ticket.held, (k) => results[k], slotsFreed);
    if (freed > 0 && Date.now() < this.busyUntil) this.kick();
  }

  /**
   * Gives back what `held` entries took: concurrency slots are released
   * (unless `slotsFreed`); budget tokens are refunded in full without a result
   * (the entry did not run) or corrected by its reported cost. Returns the
   * slots freed.
   */
  private async giveBack(held: Held[], resultOf: (k: number) => StageItemResult | undefined, slotsFreed = false): Promise<number> {
    let byLimiter: Map<string, { li: number; values: Array<string | number> }> | undefined;
    let freed = 0;
    // Freed keys are looked at first by the next readmit pass, while parked entries were seen lately.
    const busy = Date.now() < this.busyUntil;
    for (let k = 0; k < held.length; k++) {
      const h = held[k];
      for (let li = 0; li < h.taken.length; li++) {
        const t = h.taken[li];
        if (!t) continue;
        const kind = this.limiters[li].kind;
        let value: string | number | undefined;
        if (holdsSlots(kind)) {
          freed++;
          if (busy && kind === "concurrency") this.forced.add(`concurrency:${t.limiter.slice(t.limiter.lastIndexOf(":") + 1)}`);
          else if (busy && kind === "lanes") for (const lane of PRIORITIES) this.forced.add(`lanes:${lane}`);
          if (!slotsFreed) value = h.member;
        } else if (kind === "budget") {
          const r = resultOf(k);
          const actual = r ? r.cost : 0;
          if (actual !== undefined && actual !== t.amount) value = t.amount - actual;
        } else if (!resultOf(k)) value = t.amount;
        if (value === undefined) continue;
        byLimiter ??= new Map();
        let g = byLimiter.get(t.limiter);
        if (!g) byLimiter.set(t.limiter, (g = { li, values: [] }));
        g.values.push(value);
      }
      h.taken = [];
    }
    if (!byLimiter) return freed;
    const now = Date.now();
    const all = [...byLimiter];
    // One call per limit kind: a stage's limiters share one slot.
    await Promise.all(
      this.limiters.map(async (lim, li) => {
        const groups = all.filter(([, g]) => g.li === li).map(([key, g]) => ({ key, values: g.values }));
        if (groups.length === 0) return;
        if (holdsSlots(lim.kind)) await this.releaseCall("release", now, 0, groups);
        else await this.releaseCall("adjust", now, lim.cap, groups);
      }),
    );
    return freed;
  }

  /**
   * A parked entry that came back with room reserved under a limit it did not
   * reach (a later limit of the same entry's list parked it first) frees that
   * room now, instead of holding it until the reservation lease ends.
   */
  private async dropReservations(held: Held[], ctxOf: ReadonlyMap<Held, { payload: unknown; ctx: FlowKeyContext }>): Promise<void> {
    const { keys, stage } = this.o;
    await Promise.all(
      held.map(async (h) => {
        const r = h.entry.reservation;
        if (!r) return;
        const kind = r.slice(0, r.indexOf(":")) as FlowKind;
        const li = this.limiters.findIndex((l) => l.kind === kind);
        const c = ctxOf.get(h);
        if (li < 0 || !holdsSlots(kind) || !c) return;
        let flowKey: string;
        try {
          flowKey = String(this.limiters[li].key(c.payload, c.ctx));
        } catch {
          return;
        }
        // Swapped for the entry's own member if it got that far; either way neither is held now.
        await this.releaseCall("release", Date.now(), 0, [{ key: keys.flowLimiter(stage, kind, flowKey), values: [r.slice(kind.length + 1), h.member] }]);
      }),
    );
  }

  private async park(items: Array<{ h: Held; kind: FlowKind; flowKey: string; dueAt: number }>): Promise<void> {
    const { keys, stage } = this.o;
    const byPartition = new Map<number, typeof items>();
    for (const item of items) {
      const p = item.h.entry.partition;
      const list = byPartition.get(p) ?? [];
      list.push(item);
      byPartition.set(p, list);
    }
    this.busyUntil = Date.now() + 5000;
    await Promise.all(
      [...byPartition].map(async ([p, list]) => {
        const keyList = [keys.stream(stage, p), keys.stageStats(stage, p), keys.flowReady(stage, p)];
        const index = new Map<string, number>();
        const args: Array<string | number> = [keys.group(stage), list.length];
        for (const { h, kind, flowKey, dueAt } of list) {
          const waiting = keys.flowWaiting(stage, p, kind, flowKey);
          let idx = index.get(waiting);
          if (idx === undefined) {
            keyList.push(waiting);
            index.set(waiting, (idx = keyList.length));
          }
          // This delivery does not count: the record keeps only the earlier ones.
          args.push(h.entry.id, idx, `${kind}:${flowKeyPart(flowKey)}`, `${h.entry.deliveries - 1}|${h.entry.raw}`, dueAt);
        }
        const parked = Number(await runScript(this.o.conn, "flowPark", keyList, args));
        this.counters.parked += parked;
        const lanes = list.filter((i) => i.kind === "lanes").length;
        if (lanes > 0 && parked > 0) await this.releaseCall("queue", Date.now(), 0, [{ key: keys.flowLanesQueued(stage), values: [Math.min(lanes, parked)] }]);
      }),
    );
  }

  /** Wakes the readmit loop now (room was freed here). */
  kick(): void {
    this.kicked = true;
    this.wake?.();
  }

  private async readmitLoop(): Promise<void> {
    let failures = 0;
    while (this.running) {
      let delay = this.o.sweepMs;
      try {
        this.kicked = false;
        const next = await this.readmitOnce();
        failures = 0;
        if (next >= 0) delay = Math.min(delay, Math.max(1, next - Date.now()));
      } catch (err) {
        failures++;
        if (failures === 1) this.o.log(`[${this.o.stage}] readmitting parked entries failed: ${(err as Error).message}`);
      }
      if (!this.running) break;
      if (this.kicked) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, delay);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.wake = done;
      });
      this.wake = undefined;
    }
  }

  /**
   * One pass over every partition: readmits what the limiters have room for.
   * Returns the earliest time a parked key becomes due (-1: none known).
   */
  async readmitOnce(): Promise<number> {
    const { keys, stage } = this.o;
    const forced = [...this.forced];
    this.forced.clear();
    let nextDue = -1;
    let found = false;
    for (const p of keys.allPartitions) {
      const now = Date.now();
      const reply = await runScript<Array<[string, number, string[]] | number>>(this.o.conn, "flowReady", [keys.flowReady(stage, p)], [keys.flowWaitingPrefix(stage, p), now, 256, 64, ...forced]);
      const due = Number(reply[reply.length - 1]);
      if (due >= 0 && (nextDue < 0 || due < nextDue)) nextDue = due;
      const ready = reply.slice(0, -1) as Array<[string, number, string[]]>;
      if (ready.length === 0) continue;
      found = true;
      const groups: Array<{ member: string; limiter: string; li: number; count: number; tokens: string[]; nextDue: number }> = [];
      const laneReady = ready.filter(([member]) => member.startsWith("lanes:"));
      if (laneReady.length > 0) groups.push(...(await this.reserveLanes(laneReady, now)));
      await Promise.all(
        ready.filter(([member]) => !member.startsWith("lanes:")).map(async ([member, length, heads]) => {
          const kind = member.slice(0, member.indexOf(":")) as FlowKind;
          const li = this.limiters.findIndex((l) => l.kind === kind);
          if (li < 0) return; // a limit the stage no longer declares: left parked (see docs)
          const lim = this.limiters[li];
          const flowKey = member.slice(kind.length + 1);
          const limiter = keys.flowLimiter(stage, kind, flowKey);
          const wanted = Math.min(Number(length), heads.length);
          const amounts = heads.slice(0, wanted).map((record) => (kind === "budget" ? this.estimateRecord(record) : 1));
          const tokens = amounts.map(() => (kind === "concurrency" ? `r:${randomHex(6)}` : "1"));
          const args: Array<string | number> = [kind, now, lim.cap, kind === "concurrency" ? this.o.reserveMs : lim.param, 1, wanted];
          for (let k = 0; k < wanted; k++) args.push(tokens[k], amounts[k], "");
          const [[flags, waitMs]] = await this.acquireRaw(kind, args, [limiter]);
          const granted = flags.filter((f) => Number(f) === 1).length;
          const later = kind === "concurrency" ? now + this.o.recheckMs : now + Math.max(1, Number(waitMs) || 1);
          if (granted === 0) {
            groups.push({ member, limiter, li, count: 0, tokens: [], nextDue: later });
            return;
          }
          // More than the heads wait: look again soon (the room may not be used up).
          const again = granted === wanted && Number(length) > granted ? now : later;
          groups.push({ member, limiter, li, count: granted, tokens: tokens.slice(0, granted).map((t) => (kind === "concurrency" ? `concurrency:${t}` : `${kind}:1`)), nextDue: again });
        }),
      );
      if (groups.length === 0) continue;
      const keyList = [keys.stream(stage, p), keys.stageStats(stage, p), keys.flowReady(stage, p)];
      const args: Array<string | number> = [groups.length];
      for (const g of groups) {
        keyList.push(keys.flowWaitingPrefix(stage, p) + g.member);
        args.push(keyList.length, g.member, g.nextDue, g.count, ...g.tokens);
        if (nextDue < 0 || g.nextDue < nextDue) nextDue = g.nextDue;
      }
      const moved = await runScript<number[]>(this.o.conn, "flowReadmit", keyList, args);
      const lanesMoved = groups.reduce((n, g, k) => n + (g.member.startsWith("lanes:") ? Number(moved[k]) : 0), 0);
      if (lanesMoved > 0) await this.releaseCall("queue", Date.now(), 0, [{ key: keys.flowLanesQueued(stage), values: [-lanesMoved] }]);
      await Promise.all(
        groups.map(async (g, k) => {
          const m = Number(moved[k]);
          this.counters.readmitted += m;
          if (m >= g.count) return;
          // Another host readmitted these first: free the room reserved for nothing.
          const lim = this.limiters[g.li];
          const rest = g.tokens.slice(m).map((t) => t.slice(t.indexOf(":") + 1));
          if (holdsSlots(lim.kind)) await this.releaseCall("release", Date.now(), 0, [{ key: g.limiter, values: rest }]);
        }),
      );
    }
    if (found) this.busyUntil = Date.now() + 5000;
    return nextDue;
  }

  /** The admit path's flow-acquire call: arguments built straight from the groups, with each entry's reservation under this limit. */
  private acquireGroups(lim: Limiter, groups: ReadonlyArray<{ limiter: string; items: Held[]; amounts: number[] }>, now: number): Promise<Array<[number[], number]>> {
    const keys: string[] = [];
    const args: Array<string | number> = [lim.kind, now, lim.cap, lim.param, 0];
    for (let gi = 0; gi < groups.length; gi++) keys.push(groups[gi].limiter);
    if (lim.kind === "lanes") keys.push(this.o.keys.flowLanesQueued(this.o.stage));
    args.push(lim.kind === "lanes" ? keys.length : 0, groups.length);
    const slots = holdsSlots(lim.kind);
    for (let gi = 0; gi < groups.length; gi++) {
      const g = groups[gi];
      args.push(gi + 1, g.items.length);
      for (let k = 0; k < g.items.length; k++) {
        const h = g.items[k];
        const r = h.entry.reservation;
        let reserved = "";
        if (r !== undefined && r.length > lim.kind.length && r.charCodeAt(lim.kind.length) === 58 && r.startsWith(lim.kind)) reserved = slots ? r.slice(lim.kind.length + 1) : "1";
        args.push(h.member, g.amounts[k], reserved);
      }
    }
    return runScript<Array<[number[], number]>>(this.o.conn, "flowAcquire", keys, args);
  }

  /** One flow-acquire call for every group of one limit kind (a stage's limiters share one slot). */
  private acquire(lim: Limiter, groups: Array<{ limiter: string; items: Array<[string, number, string]> }>, prefixOnly: boolean, now: number): Promise<Array<[number[], number]>> {
    const keys = groups.map((g) => g.limiter);
    const args: Array<string | number> = [lim.kind, now, lim.cap, lim.param, prefixOnly ? 1 : 0];
    if (lim.kind === "lanes") keys.push(this.o.keys.flowLanesQueued(this.o.stage));
    args.push(lim.kind === "lanes" ? keys.length : 0, groups.length);
    groups.forEach((g, k) => {
      args.push(k + 1, g.items.length);
      for (const item of g.items) args.push(...item);
    });
    return runScript<Array<[number[], number]>>(this.o.conn, "flowAcquire", keys, args);
  }

  /**
   * A single-group acquire from the one-group argument layout the readmit
   * pass builds: [kind, now, cap, param, prefixOnly, n, ...items].
   */
  private acquireRaw(kind: FlowKind, flat: Array<string | number>, keys: string[]): Promise<Array<[number[], number]>> {
    const [, now, cap, param, prefixOnly, n, ...items] = flat;
    const lim: Limiter = { kind, key: () => "", cap: Number(cap), param: Number(param), amount: () => 1 };
    const triples: Array<[string, number, string]> = [];
    for (let k = 0; k < Number(n); k++) triples.push([String(items[3 * k]), Number(items[3 * k + 1]), String(items[3 * k + 2])]);
    return this.acquire(lim, [{ limiter: keys[0], items: triples }], Number(prefixOnly) === 1, Number(now));
  }

  /** One flow-release call over several limiters of the stage. */
  private releaseCall(op: "release" | "extend" | "adjust" | "queue", now: number, param: number, groups: Array<{ key: string; values: Array<string | number> }>): Promise<unknown> {
    const args: Array<string | number> = [op, now, param, groups.length];
    groups.forEach((g, k) => args.push(k + 1, g.values.length, ...g.values));
    return runScript(this.o.conn, "flowRelease", groups.map((g) => g.key), args);
  }

  /**
   * Reserves the free slots of the lanes limiter once for every waiting lane
   * of a partition and hands them out by smooth weighted round-robin over the
   * lanes that wait (8:2:1 by default), so high goes first and low never
   * starves. Returns the readmit groups.
   */
  private async reserveLanes(ready: Array<[string, number, string[]]>, now: number): Promise<Array<{ member: string; limiter: string; li: number; count: number; tokens: string[]; nextDue: number }>> {
    const { keys, stage } = this.o;
    const li = this.limiters.findIndex((l) => l.kind === "lanes");
    if (li < 0) return [];
    const lim = this.limiters[li];
    const limiter = keys.flowLimiter(stage, "lanes", "all");
    const left = new Map<Priority, number>();
    for (const [member, length, heads] of ready) left.set(member.slice("lanes:".length) as Priority, Math.min(Number(length), heads.length));
    const wanted = Math.min(64, [...left.values()].reduce((a, b) => a + b, 0));
    const tokens = Array.from({ length: wanted }, () => `r:${randomHex(6)}`);
    const args: Array<string | number> = ["lanes", now, lim.cap, this.o.reserveMs, 1, wanted];
    for (const t of tokens) args.push(t, 1, "");
    const [[flags]] = await this.acquireRaw("lanes", args, [limiter]);
    const granted = flags.filter((f) => Number(f) === 1).length;
    const counts = new Map<Priority, number>();
    for (let k = 0; k < granted; k++) {
      let best: Priority | undefined;
      let total = 0;
      for (const lane of PRIORITIES) {
        if ((left.get(lane) ?? 0) <= 0 || this.weights[lane] <= 0) continue;
        this.credit[lane] += this.weights[lane];
        total += this.weights[lane];
        if (!best || this.credit[lane] > this.credit[best]) best = lane;
      }
      if (!best) break;
      this.credit[best] -= total;
      left.set(best, left.get(best)! - 1);
      counts.set(best, (counts.get(best) ?? 0) + 1);
    }
    let used = 0;
    const groups = ready.map(([member]) => {
      const lane = member.slice("lanes:".length) as Priority;
      const count = counts.get(lane) ?? 0;
      const mine = tokens.slice(used, used + count).map((t) => `lanes:${t}`);
      used += count;
      return { member, limiter, li, count, tokens: mine, nextDue: now + this.o.recheckMs };
    });
    // Reserved but not handed out (a lane with weight 0): freed at once.
    if (used < granted) await this.releaseCall("release", now, 0, [{ key: limiter, values: tokens.slice(used, granted) }]);
    return groups;
  }

  /** A budget's estimate for a parked record ("<deliveries>|<envelope json>"); 1 when it cannot be read. */
  private estimateRecord(record: string): number {
    const lim = this.limiters.find((l) => l.kind === "budget")!;
    try {
      const envelope = JSON.parse(record.slice(record.indexOf("|") + 1)) as Envelope;
      const c = this.context({ partition: 0, id: "0-0", raw: "", deliveries: 1, envelope });
      return c ? lim.amount(c.payload, c.ctx) : 1;
    } catch {
      return 1;
    }
  }

  /** Pushes the lease deadline of the concurrency slots held by entries still in handlers here. */
  async extendLeases(): Promise<void> {
    if (this.inFlight.size === 0) return;
    const byKey = new Map<string, Set<string>>();
    for (const ticket of this.inFlight) {
      for (const { key, members } of this.slotsOf(ticket)) {
        let set = byKey.get(key);
        if (!set) byKey.set(key, (set = new Set()));
        for (const m of members) set.add(m);
      }
    }
    if (byKey.size === 0) return;
    const now = Date.now();
    try {
      await this.releaseCall("extend", now, this.o.leaseMs, [...byKey].map(([key, members]) => ({ key, values: [...members] })));
    } catch (err) {
      this.o.log(`[${this.o.stage}] extending flow leases failed: ${(err as Error).message}`);
    }
  }
}

/** Limits whose room is a set of slot leases (the others are token buckets). */
function holdsSlots(kind: FlowKind): boolean {
  return kind === "concurrency" || kind === "lanes";
}

/** The identity an entry holds a slot under: its run and branch (one envelope per run and branch reaches a stage). */
function memberOf(envelope: Envelope): string {
  return envelope.branch ? `${envelope.runId}#${envelope.branch}` : envelope.runId;
}
