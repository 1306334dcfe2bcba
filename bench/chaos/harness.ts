/**
 * One seeded chaos run: a server (the project's launcher, AOF on), one or two
 * worker-host processes started as `npm start` starts them, each behind its
 * own TCP proxy, real articles and hundreds of users over the public API,
 * and faults injected at seeded moments, one after another. After each fault
 * a probe must go through every host's own consumer at every stage; at the
 * end the oracle (oracle.ts) checks every run and every feed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { loadArticles, type BenchArticle } from "../articles";
import { AG_NEWS_CSV } from "../../worker-host/news/sample-work";
import { TOPICS } from "../../functions/news/classify";
import { createKeys } from "../../functions/keys";
import { connectValkey, type Connection } from "../../worker-host/valkey";
import { freePort, type ServerBinary } from "../../worker-host/valkey-launcher";
import { buildWorkerBundle } from "../../worker-host/worker-bundle";
import { writeWorkerProject } from "../../worker-host/worker-project";
import type { ChaosFault } from "./chaos-app";
import { POISON_REJECT, POISON_RETRY } from "./chaos-app";
import { hostBundle } from "./host-bundle";
import { ChaosHost } from "./hosts";
import { checkRun, type OracleReport } from "./oracle";
import { ChaosServer, type Fsync } from "./server";

export const FAULT_KINDS = ["host-kill", "server-kill", "server-outage", "host-pause", "network-stall", "handler-error", "handler-hang", "workerd-restart", "workerd-outage"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface ChaosOptions {
  seed: number;
  hosts: 1 | 2;
  fsync: Fsync;
  articles: number;
  users: number;
  /** Faults per run. */
  faults: number;
  /** Kinds to draw from (default: all that apply). */
  kinds?: FaultKind[];
  /** These faults in this order instead of seeded draws of `kinds`. */
  sequence?: FaultKind[];
  /** Handlers in-process (npm start) or in workerd behind STAGE_BASE_URL. */
  stages: "in-process" | "workerd";
  /** How host processes start: the pre-built CLI bundle (default, fast) or npm start's exact tsx command (hosts.ts). */
  hostStart?: "bundle" | "tsx";
  /** Articles per second offered at ingest. */
  rate: number;
  visibilityMs: number;
  /** The hosts' RETRY_BACKOFF_MS (default: the host's own, 1000): a shorter one dead-letters the retrying poison sooner, so the drain ends sooner. */
  retryBackoffMs?: number;
  binary?: ServerBinary;
  /** Progress lines. */
  log: (line: string) => void;
  /** Child output (quiet by default). */
  childLog?: (line: string) => void;
  /**
   * After the oracle passes, break the feeds on purpose (one delivery removed,
   * one repeated) and check again: `RunResult.tampered` must report both.
   */
  selfTest?: boolean;
}

export interface FaultRecord {
  kind: FaultKind | "poison";
  target?: string;
  detail: string;
  startedAt: number;
  endedAt: number;
  /** From the end of the fault to the first probe that completed (ms). */
  recoveryMs?: number;
  /** From the end of the fault until every host had committed a probe at every stage (ms). */
  allHostsMs?: number;
  /** Hosts that took no probe at some stage within the bound. */
  stalled: string[];
  /** Bytes cut from the AOF (simulated power loss under everysec). */
  cutBytes?: number;
  /** Runs answered 202 that this crash took away (set by the oracle). */
  everysecLost?: number;
  /** Poison: injected and found dead-lettered with their reason. */
  injected?: number;
  deadLettered?: number;
}

export interface TrackedRun {
  runId: string;
  article: BenchArticle;
  /** When the POST that got the 202 was sent. */
  sentAt: number;
  acceptedAt: number;
  kind: "article" | "probe" | "poison-reject" | "poison-retry";
}

export interface RunResult {
  seed: number;
  hosts: number;
  fsync: Fsync;
  server: string;
  faults: FaultRecord[];
  report: OracleReport;
  ms: number;
  /** Ctrl-C of each host under load at the end of the run, ms to exit. */
  ctrlCMs: number[];
  /** The oracle's report on the feeds broken on purpose (selfTest). */
  tampered?: OracleReport;
}

/** mulberry32: a small seeded PRNG. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Probes sent side by side per round (see probeAfter). */
const PROBES_PER_ROUND = 3;

/** Bound on how long a host may take a probe after a fault ended, and on a run's delay past its fault. */
export const RECOVERY_BOUND_MS = 30_000;

/** The handlers' fault endpoint (CHAOS_CONTROL_URL): answers the fault in force. */
async function startControl(): Promise<{ url: string; set(f: ChaosFault): void; close(): Promise<void> }> {
  let fault: ChaosFault = { kind: "none" };
  const server: Server = createServer((_req, res) => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify(fault));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/fault`,
    set: (f) => (fault = f),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** The workerd side of HTTP mode: REST bridge + Miniflare running the chaos app's bundle, as its own process group. */
class StageServer {
  child: ChildProcess | undefined;
  url = "";
  constructor(
    private readonly bundle: string,
    private readonly env: Record<string, string>,
    private readonly log: (line: string) => void,
  ) {}
  async start(): Promise<void> {
    const child = spawn(process.execPath, ["--import", "tsx", "bench/chaos/stage-server.ts", "--bundle", this.bundle], { env: { ...process.env, ...this.env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
    this.child = child;
    const out: string[] = [];
    this.url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`stage server did not start within 90 s:\n${out.join("")}`)), 90_000);
      const onData = (d: Buffer) => {
        out.push(d.toString());
        for (const l of d.toString().split("\n")) if (l.trim()) this.log(`[workerd] ${l}`);
        const m = /stage server on (http:\/\/\S+)/.exec(out.join(""));
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      };
      child.stdout!.on("data", onData);
      child.stderr!.on("data", onData);
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        this.log(`[workerd] stage server exited (${code ?? signal})`);
        reject(new Error(`stage server exited (${code ?? signal}):\n${out.join("")}`));
      });
    });
  }
  /** SIGKILL of the whole process group (node, Miniflare's workerd). */
  async kill9(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      child.kill("SIGKILL");
    }
    await exited;
    // workerd itself may outlive the group signal by a moment; wait for its port to free up.
    await sleep(300);
  }
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill("SIGTERM");
    const ok = await Promise.race([exited.then(() => true), sleep(8000).then(() => false)]);
    if (!ok) await this.kill9();
  }
}

/** Unique real articles (exact duplicates in the source would be skipped by the fetcher's dedupe, by design). */
function uniqueArticles(n: number, seed: number): { articles: BenchArticle[]; source: string } {
  const { articles, source } = loadArticles(n * 2, { csvPath: AG_NEWS_CSV });
  const seen = new Set<string>();
  const out: BenchArticle[] = [];
  for (const a of articles) {
    const key = `${a.title.toLowerCase().replace(/\s+/g, " ").trim()}|${a.body.toLowerCase().replace(/\s+/g, " ").trim()}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ ...a, id: `s${seed}-${out.length}`, url: `https://chaos.example/${seed}/${out.length}` });
    if (out.length === n) break;
  }
  return { articles: out, source };
}

async function http(url: string, init: RequestInit & { timeoutMs?: number } = {}): Promise<{ status: number; json: any }> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(init.timeoutMs ?? 10_000) });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

export async function runChaos(o: ChaosOptions): Promise<RunResult> {
  const started = Date.now();
  // The fault plan (kinds, targets, durations, users, poison) draws from its own stream; which live host
  // gets each request draws from another, so a seed replays the same faults however the timing goes.
  const random = seededRandom(o.seed);
  const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)];
  const routeRandom = seededRandom(o.seed ^ 0x5bd1e995);
  const between = (lo: number, hi: number) => Math.round(lo + random() * (hi - lo));
  const childLog = o.childLog ?? (() => {});
  const dir = mkdtempSync(join(tmpdir(), `edgepipe-chaos-${o.seed}-`));
  const server = new ChaosServer(join(dir, "valkey"), o.fsync, o.binary);
  const control = await startControl();
  const hosts: ChaosHost[] = [];
  let stageServer: StageServer | undefined;
  let admin: Connection | undefined;
  const faults: FaultRecord[] = [];
  const tracked: TrackedRun[] = [];
  const ctrlCMs: number[] = [];
  const prefix = "chaos";
  const keys = createKeys({ prefix });
  try {
    // The hosts' pre-built CLI (host-bundle.ts) builds while the server starts.
    const bundling = o.hostStart === "tsx" ? undefined : hostBundle();
    await server.start();
    await bundling;
    admin = connectValkey(server.url, { name: "chaos-admin", log: () => {} });
    const hostEnv: Record<string, string> = {
      KEY_PREFIX: prefix,
      FEED_CAP: "100000",
      TOPIC_LIST_CAP: "100000",
      VISIBILITY_TIMEOUT_MS: String(o.visibilityMs),
      BATCH_SIZE: "50",
      CHAOS_CONTROL_URL: control.url,
      ...(o.retryBackoffMs !== undefined ? { RETRY_BACKOFF_MS: String(o.retryBackoffMs) } : {}),
    };
    if (o.stages === "workerd") {
      const signingKeys = `chaos:${"k".repeat(8)}${o.seed}${"s".repeat(12)}`;
      const stagePort = await freePort();
      const bridgePort = await freePort();
      // The chaos app's Worker, built once per run as `edgepipe build` builds it.
      const project = writeWorkerProject({ module: resolve("bench/chaos/chaos-app.ts"), name: "chaos", root: join(dir, "worker") });
      const bundle = await buildWorkerBundle({ outdir: join(dir, "worker", "dist"), configPath: project.configPath });
      stageServer = new StageServer(
        bundle.scriptPath,
        { ...hostEnv, VALKEY_URL: server.url, PORT: String(stagePort), UPSTASH_REDIS_REST_URL: `http://127.0.0.1:${bridgePort}`, UPSTASH_REDIS_REST_TOKEN: `chaos-bridge-${o.seed}-token`, STAGE_SIGNING_KEYS: signingKeys, DEMO: "off" },
        childLog,
      );
      await stageServer.start();
      const probe = await fetch(`${stageServer.url}/health`, { signal: AbortSignal.timeout(10_000) }).then((r) => r.status, (e: Error) => e.message);
      o.log(`  workerd (Miniflare) on ${stageServer.url}: /health ${probe}`);
      Object.assign(hostEnv, { STAGE_BASE_URL: stageServer.url, STAGE_SIGNING_KEYS: signingKeys });
    }
    for (let i = 0; i < o.hosts; i++) hosts.push(new ChaosHost({ name: `h${i + 1}`, serverPort: server.port, env: hostEnv, log: childLog, start: o.hostStart }));
    await Promise.all(hosts.map((h) => h.start()));
    const live = () => hosts.filter((h) => h.alive && !h.stopped);
    const apiUrl = () => {
      const l = live();
      return l.length > 0 ? l[Math.floor(routeRandom() * l.length)].url : undefined;
    };

    // Users and their interests, over the public API.
    const users = Array.from({ length: o.users }, (_, i) => {
      const n = between(1, 3);
      const interests = new Set<string>();
      while (interests.size < n) interests.add(pick(TOPICS));
      return { uid: `chaos-u${i}`, interests: [...interests] };
    });
    for (let i = 0; i < users.length; i += 20) {
      await Promise.all(
        users.slice(i, i + 20).map(async (u) => {
          const res = await http(`${hosts[0].url}/v1/users/${u.uid}`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ interests: u.interests }) });
          if (res.status !== 200) throw new Error(`PUT /v1/users/${u.uid} answered ${res.status}: ${JSON.stringify(res.json)}`);
        }),
      );
    }

    const { articles, source } = uniqueArticles(o.articles, o.seed);
    o.log(`  ${articles.length} articles (${source}), ${users.length} users, ${o.hosts} host(s), ${o.fsync}, ${server.binary.flavor} ${server.binary.version}, stages ${o.stages}; up in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    /** POSTs articles until some host answers 202 (a 503 or a dropped answer is retried: the fetcher drops exact repeats). */
    let ambiguous = 0;
    const ingest = async (batch: BenchArticle[], kind: TrackedRun["kind"], giveUpAt = Date.now() + 120_000): Promise<TrackedRun[]> => {
      while (Date.now() < giveUpAt) {
        const url = apiUrl();
        if (!url) {
          await sleep(100);
          continue;
        }
        const sentAt = Date.now();
        try {
          const res = await http(`${url}/v1/articles`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ articles: batch.map(({ id: _id, ...a }) => a) }), timeoutMs: 15_000 });
          if (res.status === 202) {
            const at = Date.now();
            const runs = (res.json.runIds as string[]).map((runId, i) => ({ runId, article: batch[i], sentAt, acceptedAt: at, kind }));
            tracked.push(...runs);
            return runs;
          }
        } catch {
          ambiguous++;
        }
        await sleep(200);
      }
      throw new Error(`ingest not accepted within 120 s`);
    };

    // Poison: rejected at once, and failing every delivery; plus malformed stream entries, injected at seeded moments.
    const poisonPlan = [POISON_REJECT, POISON_RETRY, POISON_REJECT, POISON_RETRY].map((marker, i) => ({ marker, at: between(0, articles.length - 1), i }));
    const malformed: Array<{ marker: string; fields: string[]; reason: RegExp; addedAt?: number }> = [
      { marker: "chaos-malformed-1", fields: ["junk", "chaos-malformed-1"], reason: /envelope/i },
      { marker: "chaos-malformed-2", fields: ["e", "{not json chaos-malformed-2"], reason: /json/i },
      { marker: "chaos-malformed-3", fields: ["e", JSON.stringify({ runId: "chaos-malformed-3", stage: "classifier", attempt: 1, traceId: "4bf92f3577b34da6a3ce929d0e0e4736", createdAt: Date.now(), payload: {} })], reason: /stage/i },
    ];

    // Ingest: batches at the offered rate, to a random live host.
    const batchSize = 20;
    const ingesting = (async () => {
      for (let i = 0; i < articles.length; i += batchSize) {
        const batchStarted = Date.now();
        const batch = articles.slice(i, i + batchSize);
        await ingest(batch, "article");
        for (const p of poisonPlan.filter((p) => p.at >= i && p.at < i + batchSize)) {
          const a = articles[p.at];
          await ingest([{ ...a, url: `${a.url}/poison`, title: `${p.marker} ${a.title}`, body: `${a.body} poison ${p.i}` }], p.marker === POISON_REJECT ? "poison-reject" : "poison-retry");
        }
        if (i === Math.floor(articles.length / batchSize / 2) * batchSize) {
          // Retried through an outage: an entry that never reached the stream would read as lost.
          for (const m of malformed) {
            for (let tries = 0; tries < 200; tries++) {
              const ok = await admin!.xadd(keys.stream("fetcher", 0), "*", ...m.fields).then(() => true, () => false);
              if (ok) {
                m.addedAt = Date.now();
                break;
              }
              await sleep(200);
            }
          }
        }
        await sleep(Math.max(0, (batch.length / o.rate) * 1000 - (Date.now() - batchStarted)));
      }
    })();

    // Probes: rounds of PROBES_PER_ROUND articles at once until every live host committed one at every stage.
    // Not one at a time: the server hands a new entry to the consumer that has been blocked longest, so
    // sequential probes fall into a fixed pattern of hosts (measured with two idle hosts: 173 probes in a
    // row alternated whole runs, f2c2e2f2 f1c1e1f1 ...), and a pattern in which one host always wins a
    // stage would report the other as stalled while it reads every second. Probes committed side by side
    // reach whichever readers are blocked, so every host that reads gets one.
    let probeN = 0;
    const stages = ["fetcher", "classifier", "enricher", "fanout"];
    const probeAfter = async (endedAt: number): Promise<Pick<FaultRecord, "recoveryMs" | "allHostsMs" | "stalled">> => {
      const covered = new Map<ChaosHost, Set<string>>(hosts.map((h) => [h, new Set<string>()]));
      let recoveryMs: number | undefined;
      const deadline = endedAt + RECOVERY_BOUND_MS;
      /** One probe article, waited for (bounded by the deadline); false when it could not be ingested. */
      const probeOnce = async (): Promise<boolean> => {
        const a = articles[probeN % articles.length];
        probeN++;
        let run: TrackedRun;
        try {
          [run] = await ingest([{ ...a, url: `https://chaos.example/${o.seed}/probe/${probeN}`, title: `Chaos probe ${probeN}: ${a.title}`, body: `${a.body} (probe ${probeN})` }], "probe", deadline);
        } catch {
          return false;
        }
        while (Date.now() < deadline) {
          const url = apiUrl();
          const res = url ? await http(`${url}/v1/runs/${run.runId}`, { timeoutMs: 3000 }).catch(() => undefined) : undefined;
          if (res?.status === 200 && res.json.status !== "running") {
            // A probe that did not complete (dead-lettered) shows no recovery and no host.
            if (res.json.status !== "completed") break;
            recoveryMs ??= Date.now() - endedAt;
            for (const step of res.json.steps as Array<{ stage: string; by?: string }>) {
              const h = hosts.find((x) => x.owns(step.by));
              if (h) covered.get(h)!.add(step.stage);
            }
            break;
          }
          await sleep(50);
        }
        return true;
      };
      while (Date.now() < deadline) {
        const round = await Promise.all(Array.from({ length: PROBES_PER_ROUND }, probeOnce));
        if (hosts.every((h) => stages.every((s) => covered.get(h)!.has(s)))) return { recoveryMs, allHostsMs: Date.now() - endedAt, stalled: [] };
        if (!round.some(Boolean)) break;
      }
      // The stalled host's own last lines say what its loops were doing.
      const stalled = hosts
        .filter((h) => !stages.every((s) => covered.get(h)!.has(s)))
        .map((h) => `${h.name} (took ${[...covered.get(h)!].join(",") || "no stage"}; its last lines: ${h.output.slice(-6).join(" | ").slice(0, 600)})`);
      return { recoveryMs, stalled };
    };

    const needsWorkerd = (k: FaultKind) => k === "workerd-restart" || k === "workerd-outage";
    const kinds = (o.kinds ?? FAULT_KINDS).filter((k) => !needsWorkerd(k) || o.stages === "workerd");
    const inject = async (kind: FaultKind): Promise<Omit<FaultRecord, "recoveryMs" | "allHostsMs" | "stalled">> => {
      const startedAt = Date.now();
      switch (kind) {
        case "host-kill": {
          const h = pick(hosts.filter((x) => x.alive));
          await h.kill9();
          await sleep(between(200, 2000));
          await h.start();
          return { kind, target: h.name, detail: `kill -9 ${h.name}, restarted`, startedAt, endedAt: Date.now() };
        }
        case "server-kill":
        case "server-outage": {
          const cut = await server.crash();
          await sleep(kind === "server-kill" ? between(300, 1500) : between(5000, 15_000));
          await server.restart();
          return { kind, detail: `kill -9 server, down ${Date.now() - startedAt} ms${o.fsync === "everysec" ? `, AOF cut by ${cut.droppedBytes} B` : ""}`, startedAt, endedAt: Date.now(), cutBytes: cut.droppedBytes };
        }
        case "host-pause": {
          const h = pick(live());
          h.pause();
          const ms = o.visibilityMs + between(1000, 4000);
          await sleep(ms);
          h.resume();
          return { kind, target: h.name, detail: `SIGSTOP ${h.name} ${ms} ms (visibility ${o.visibilityMs} ms)`, startedAt, endedAt: Date.now() };
        }
        case "network-stall": {
          const h = pick(live());
          h.proxy.freeze();
          const ms = between(3000, 8000);
          await sleep(ms);
          h.proxy.thaw();
          return { kind, target: h.name, detail: `froze ${h.name}'s link ${ms} ms`, startedAt, endedAt: Date.now() };
        }
        case "handler-error": {
          const stage = random() < 0.5 ? pick(stages) : undefined;
          control.set({ kind: "error", stage });
          const ms = between(2000, 6000);
          await sleep(ms);
          control.set({ kind: "none" });
          return { kind, target: stage ?? "all stages", detail: `handlers of ${stage ?? "every stage"} fail (retryable) for ${ms} ms`, startedAt, endedAt: Date.now() };
        }
        case "handler-hang": {
          const stage = pick(stages);
          const hangMs = o.visibilityMs + 2000;
          control.set({ kind: "hang", stage, hangMs });
          const ms = between(1000, 3000);
          await sleep(ms);
          control.set({ kind: "none" });
          // Handlers that started hanging at the end of the window return hangMs later.
          await sleep(hangMs);
          return { kind, target: stage, detail: `${stage} handlers hang ${hangMs} ms (past the visibility timeout) for ${ms} ms`, startedAt, endedAt: Date.now() };
        }
        case "workerd-restart":
        case "workerd-outage": {
          await stageServer!.kill9();
          // An outage outlasts every retry backoff of MAX_DELIVERIES together (about 7.5 s at the defaults).
          const downMs = kind === "workerd-restart" ? between(200, 1500) : between(5000, 15_000);
          await sleep(downMs);
          await stageServer!.start();
          return { kind, detail: `kill -9 workerd (Miniflare), down ${Date.now() - startedAt} ms, restarted on the same port`, startedAt, endedAt: Date.now() };
        }
      }
    };

    await sleep(between(1500, 4000));
    const count = o.sequence?.length ?? o.faults;
    for (let f = 0; f < count; f++) {
      const kind = o.sequence?.[f] ?? pick(kinds);
      const record = await inject(kind);
      const probe = await probeAfter(record.endedAt);
      const full: FaultRecord = { ...record, ...probe };
      faults.push(full);
      o.log(
        `  fault ${f + 1}/${count} ${full.kind}: ${full.detail}; recovered ${full.recoveryMs !== undefined ? `${(full.recoveryMs / 1000).toFixed(1)} s` : "NEVER"}` +
          `, every host ${full.allHostsMs !== undefined ? `${(full.allHostsMs / 1000).toFixed(1)} s` : `STALLED: ${full.stalled.join("; ")}`}`,
      );
      await sleep(between(500, 3000));
    }
    await ingesting;
    const checkStarted = Date.now();
    const check = () => checkRun({ hosts, tracked, users, faults, malformed, fsync: o.fsync, ambiguous, apiUrl, log: o.log, admin: admin!, keys });
    const report = await check();
    o.log(`  oracle: drained and checked in ${((Date.now() - checkStarted) / 1000).toFixed(1)} s`);
    let tampered: OracleReport | undefined;
    if (o.selfTest) {
      const fed = [];
      for (const u of users) if ((await admin!.llen(keys.feed(u.uid))) > 0) fed.push(u.uid);
      if (fed.length < 2) throw new Error("self-test needs two users with a feed");
      await admin!.lpop(keys.feed(fed[0]));
      const head = await admin!.lindex(keys.feed(fed[1]), 0);
      await admin!.rpush(keys.feed(fed[1]), head!);
      tampered = await check();
    }

    // Ctrl-C of each host under load: articles keep arriving while it stops.
    let loading = true;
    let extra = 0;
    const load = (async () => {
      while (loading) {
        const batch = articles.slice(0, 20).map((a) => ({ ...a, url: `${a.url}/after/${extra}`, title: `${a.title} (after ${extra})` }));
        extra++;
        const url = apiUrl();
        if (url) await http(`${url}/v1/articles`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ articles: batch.map(({ id: _id, ...a }) => a) }), timeoutMs: 5000 }).catch(() => undefined);
        await sleep(20);
      }
    })();
    await sleep(1000);
    for (const h of hosts) if (h.alive) ctrlCMs.push(await h.interrupt(15_000));
    loading = false;
    await load;
    return { seed: o.seed, hosts: o.hosts, fsync: o.fsync, server: `${server.binary.flavor} ${server.binary.version}`, faults, report, ms: Date.now() - started, ctrlCMs, tampered };
  } finally {
    control.set({ kind: "none" });
    admin?.disconnect();
    await Promise.allSettled(hosts.map((h) => h.close()));
    await stageServer?.stop();
    await control.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
