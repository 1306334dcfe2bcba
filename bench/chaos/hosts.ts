/**
 * Worker-host processes of the chaos suite, started as a user starts one
 * (`npm start` runs `node --max-old-space-size=512 --import tsx
 * worker-host/cli.ts start`): the same CLI as a child process, with the
 * pipeline module and the environment a user would set; by default from the
 * pre-built bundle of that CLI (host-bundle.ts, plain node: a far faster
 * start), or with `start: "tsx"` by npm start's exact command. Each reaches the
 * server through its own TCP proxy, so its link can be frozen or dropped
 * alone.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { startTcpProxy, type TcpProxy } from "../../tests/helpers/tcp-proxy";
import { hostBundle } from "./host-bundle";

export interface HostOptions {
  name: string;
  serverPort: number;
  env: Record<string, string>;
  /** Where child output goes (a line at a time, prefixed with the host name). */
  log: (line: string) => void;
  /** "bundle" (default): plain node on the pre-built CLI and app (host-bundle.ts); "tsx": npm start's exact command. */
  start?: "bundle" | "tsx";
}

export class ChaosHost {
  child: ChildProcess | undefined;
  url = "";
  proxy!: TcpProxy;
  /** Pids this host has had (every consumer name holds one). */
  readonly pids: number[] = [];
  stopped = false;
  readonly output: string[] = [];
  /** Exits the harness did not ask for (a crash), with the last lines printed. */
  readonly crashes: string[] = [];
  private expectingExit = false;

  constructor(private readonly o: HostOptions) {}

  get name(): string {
    return this.o.name;
  }

  get pid(): number {
    return this.child?.pid ?? 0;
  }

  /** The process runs (it may still be starting). */
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The process runs and listens at `url`. */
  get alive(): boolean {
    return this.running && this.listening;
  }

  private listening = false;

  async start(): Promise<void> {
    this.proxy ??= await startTcpProxy({ port: this.o.serverPort });
    const env = { ...process.env, ...this.o.env, VALKEY_URL: this.proxy.url, PORT: "0", HOST: "127.0.0.1", DEMO: "off", WEB_DIR: "" };
    const args =
      this.o.start === "tsx"
        ? ["--import", "tsx", "worker-host/cli.ts", "start", "--pipeline", "./bench/chaos/chaos-app.ts"]
        : await hostBundle().then((b) => [b.cli, "start", "--pipeline", b.app]);
    const child = spawn(process.execPath, ["--max-old-space-size=512", ...args], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    // The previous process's lines (its "listening on" among them) are not this one's.
    this.output.length = 0;
    this.listening = false;
    this.stopped = false;
    this.expectingExit = false;
    child.once("exit", (code, signal) => {
      if (!this.expectingExit) this.crashes.push(`${this.o.name} (pid ${child.pid}) exited on its own (${code ?? signal}): ${this.output.slice(-8).join(" | ")}`);
    });
    this.pids.push(child.pid!);
    let buffered = "";
    const onData = (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        this.output.push(line);
        if (this.output.length > 2000) this.output.splice(0, 1000);
        this.o.log(`[${this.o.name}] ${line}`);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    this.url = await new Promise<string>((resolve, reject) => {
      // Generous: tsx compiles the app at every start, which takes a minute on a loaded machine.
      const timer = setTimeout(() => reject(new Error(`${this.o.name} did not listen within 180 s:\n${this.output.slice(-20).join("\n")}`)), 180_000);
      const check = () => {
        const m = this.output.map((l) => /listening on (http:\/\/\S+)/.exec(l)).find(Boolean);
        if (m) {
          clearTimeout(timer);
          this.listening = true;
          resolve(m[1]);
        }
      };
      child.stdout!.on("data", check);
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${this.o.name} exited (${code ?? signal}) before listening:\n${this.output.slice(-20).join("\n")}`));
      });
    });
  }

  kill9(): Promise<void> {
    return this.signalAndWait("SIGKILL", 10_000).then(() => undefined);
  }

  /** SIGINT (Ctrl-C); resolves with how long the exit took, in ms (Infinity: did not exit in time, then SIGKILLed). */
  async interrupt(timeoutMs = 15_000): Promise<number> {
    return this.signalAndWait("SIGINT", timeoutMs);
  }

  private async signalAndWait(signal: NodeJS.Signals, timeoutMs: number): Promise<number> {
    const child = this.child;
    if (!child || !this.running) return 0;
    const started = performance.now();
    this.expectingExit = true;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.kill(signal);
    const ok = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs))]);
    if (!ok) {
      child.kill("SIGKILL");
      await exited;
      return Infinity;
    }
    return performance.now() - started;
  }

  pause(): void {
    this.child?.kill("SIGSTOP");
    this.stopped = true;
  }

  resume(): void {
    this.child?.kill("SIGCONT");
    this.stopped = false;
  }

  /** True when a consumer name (`<hostname>:<pid>:<hex>`) is one of this host's current process. */
  owns(consumer: string | undefined): boolean {
    return consumer !== undefined && consumer.split(":").at(-2) === String(this.pid);
  }

  async close(): Promise<void> {
    if (this.stopped) this.resume();
    if (this.running) {
      const ms = await this.interrupt(8000);
      if (ms === Infinity) this.o.log(`[${this.o.name}] did not exit on SIGINT within 8 s (SIGKILLed)`);
    }
    await this.proxy?.close();
  }
}
