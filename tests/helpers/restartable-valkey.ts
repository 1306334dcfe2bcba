/**
 * A real server that a test can kill -9 and start again on the same port and
 * the same data (AOF on), for outage and restart tests. One per test file.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findServerBinary, launchValkey, type RunningValkey } from "../../worker-host/valkey-launcher";

export interface RestartableValkey {
  url: string;
  port: number;
  readonly server: RunningValkey;
  /** SIGKILL: no fsync, no goodbye to clients. */
  kill9(): Promise<void>;
  /** Starts the server again on the same port and data dir (the AOF is reloaded). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts a server with AOF (`appendfsync` as given, default always) in a temp dir. */
export async function startRestartableValkey({ appendfsync = "always" }: { appendfsync?: "always" | "everysec" } = {}): Promise<RestartableValkey> {
  const dir = mkdtempSync(join(tmpdir(), "edgepipe-restart-"));
  const binary = findServerBinary();
  const launch = (port = 0) => launchValkey({ dataDir: dir, port, binary, appendOnly: true, extraArgs: ["--appendfsync", appendfsync] });
  let server = await launch();
  let up = true;
  const kill9 = async () => {
    if (!up) return;
    process.kill(server.pid, "SIGKILL");
    await server.stop(); // waits for the exit, removes the launcher state
    up = false;
  };
  return {
    url: server.url,
    port: server.port,
    get server() {
      return server;
    },
    kill9,
    async restart() {
      await kill9();
      server = await launch(server.port);
      up = true;
    },
    async stop() {
      if (up) await server.stop();
      up = false;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
