/**
 * Children that run in their own process group (wrangler dev and its
 * workerd): a watchdog that stops the group when this process dies however it
 * dies (kill -9 included), and a check of which processes listen on a port.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/**
 * A detached `sh` that reads a pipe only this process holds open: when this
 * process is gone (exit, crash, kill -9) the kernel closes the pipe, the read
 * ends at once, and the watchdog SIGTERMs the group, then SIGKILLs what is
 * left 0.2 s later (nothing there needs a graceful stop once this process is
 * gone). No polling, so it acts within milliseconds.
 * `stop()` disarms it (a normal stop has ended the group itself).
 */
export function watchProcessGroup(pgid: number): { stop(): void } {
  const script = `read _ignored; kill -TERM -${pgid} 2>/dev/null; sleep 0.2; kill -KILL -${pgid} 2>/dev/null`;
  let watchdog: ChildProcess | undefined;
  try {
    watchdog = spawn("/bin/sh", ["-c", script], { stdio: ["pipe", "ignore", "ignore"], detached: true });
  } catch {
    return { stop() {} };
  }
  watchdog.on("error", () => {});
  // Neither the pipe nor the child keeps this process alive.
  (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  watchdog.unref();
  return {
    stop() {
      try {
        watchdog?.kill("SIGKILL");
      } catch {
        // gone
      }
      watchdog?.stdin?.destroy();
      watchdog = undefined;
    },
  };
}

/** Inodes of the sockets listening on `port` (IPv4 and IPv6), from /proc/net/tcp*; undefined without /proc. */
function listeningInodes(port: number): Set<string> | undefined {
  const inodes = new Set<string>();
  let read = false;
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    read = true;
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const localPort = Number.parseInt(cols[1].split(":").pop() ?? "", 16);
      // st 0A = LISTEN
      if (localPort === port && cols[3] === "0A") inodes.add(cols[9]);
    }
  }
  return read ? inodes : undefined;
}

/** Process group of a pid (field 5 of /proc/<pid>/stat), or undefined. */
function pgidOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command may contain spaces and parentheses: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[2]);
  } catch {
    return undefined;
  }
}

/**
 * Pids that hold a listening socket on `port`, with their process group.
 * Undefined where /proc is not available (not Linux); an empty list when
 * nothing this user can see listens there.
 */
export function listenersOf(port: number): Array<{ pid: number; pgid: number | undefined }> | undefined {
  const inodes = listeningInodes(port);
  if (!inodes) return undefined;
  if (inodes.size === 0) return [];
  const found: Array<{ pid: number; pgid: number | undefined }> = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m && inodes.has(m[1])) {
        found.push({ pid, pgid: pgidOf(pid) });
        break;
      }
    }
  }
  return found;
}
