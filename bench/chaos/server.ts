/**
 * The chaos suite's server: one embedded Valkey/Redis started with the
 * project's launcher (AOF on, `appendfsync` always or everysec) that can be
 * killed with SIGKILL and started again on the same port and AOF.
 *
 * Power loss under everysec: a SIGKILL alone loses nothing the server had
 * written (the OS still has the page cache), so a crash under everysec also
 * cuts the AOF back to what the last fsync covered. A sampler records the
 * size of the AOF's current incremental file once a second (random phase), as
 * everysec's once-a-second fsync would have left it on disk; the crash
 * truncates the file to the last sample before the restart. The cut can fall
 * inside a command, as a real power loss can (the server's
 * `aof-load-truncated yes` drops the partial command at load).
 */
import { existsSync, readFileSync, statSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { findServerBinary, launchValkey, type RunningValkey, type ServerBinary } from "../../worker-host/valkey-launcher";

export type Fsync = "always" | "everysec";

export interface CutReport {
  /** Bytes of the AOF dropped by the simulated power loss (0 under always). */
  droppedBytes: number;
  file?: string;
}

export class ChaosServer {
  private server!: RunningValkey;
  private sampler: ReturnType<typeof setInterval> | undefined;
  private lastSample: { file: string; size: number } | undefined;
  port = 0;
  up = false;

  constructor(
    readonly dataDir: string,
    readonly fsync: Fsync,
    readonly binary: ServerBinary = findServerBinary(),
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number {
    return this.server.pid;
  }

  async start(): Promise<void> {
    this.server = await launchValkey({
      dataDir: this.dataDir,
      port: this.port,
      binary: this.binary,
      appendOnly: true,
      extraArgs: ["--appendfsync", this.fsync, "--aof-load-truncated", "yes"],
    });
    this.port = this.server.port;
    this.up = true;
    this.lastSample = undefined;
    if (this.fsync === "everysec") {
      clearInterval(this.sampler);
      // Random phase: the fsync that a crash follows happened 0-1 s before it.
      const phase = Math.floor(Math.random() * 1000);
      setTimeout(() => {
        this.sample();
        this.sampler = setInterval(() => this.sample(), 1000);
      }, phase);
    }
  }

  /** The AOF file the server appends to now (the last incremental file of the manifest). */
  currentAofFile(): string | undefined {
    const dir = join(this.dataDir, "appendonlydir");
    const manifest = join(dir, "appendonly.aof.manifest");
    if (!existsSync(manifest)) return undefined;
    const incr = readFileSync(manifest, "utf8")
      .split("\n")
      .map((l) => /^file (\S+) seq \d+ type i/.exec(l)?.[1])
      .filter((f): f is string => f !== undefined);
    return incr.length > 0 ? join(dir, incr[incr.length - 1]) : undefined;
  }

  private sample(): void {
    if (!this.up) return;
    const file = this.currentAofFile();
    if (file && existsSync(file)) this.lastSample = { file, size: statSync(file).size };
  }

  /** SIGKILL; under everysec the AOF is then cut back to the last simulated fsync. */
  async crash(): Promise<CutReport> {
    if (!this.up) return { droppedBytes: 0 };
    clearInterval(this.sampler);
    this.sampler = undefined;
    process.kill(this.server.pid, "SIGKILL");
    await this.server.stop();
    this.up = false;
    if (this.fsync !== "everysec" || !this.lastSample) return { droppedBytes: 0 };
    const { file, size } = this.lastSample;
    // A rewrite since the sample started a new file: nothing to cut in the old one.
    if (this.currentAofFile() !== file || !existsSync(file)) return { droppedBytes: 0 };
    const now = statSync(file).size;
    if (now > size) truncateSync(file, size);
    return { droppedBytes: Math.max(0, now - size), file };
  }

  async restart(): Promise<void> {
    await this.start();
  }

  async stop(): Promise<void> {
    clearInterval(this.sampler);
    if (this.up) await this.server.stop();
    this.up = false;
  }
}
