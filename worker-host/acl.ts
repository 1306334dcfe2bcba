/**
 * Valkey ACL users with least privilege: one for the worker-host (its stage
 * loops, scripts, notifier) and one for the REST bridge (the handlers' data
 * commands on Workers). Both are limited to the project's keys and pub/sub
 * channels (`~<prefix>:*`, `&<prefix>:*`: every key the key builder makes
 * starts with the prefix, hash tags included, e.g. `ep:{p0}:s:fetcher`) and to
 * the commands they use; scripts run under the caller's ACL too, so a command
 * a script needs is listed here. `npm run acl` prints the ACL SETUSER lines.
 *
 *   npm run acl -- --prefix ep --url redis://127.0.0.1:6379   (--url fits the lists to that server)
 */
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import { randomHex } from "../functions/envelope";
import { ALLOWED_COMMANDS } from "./rest-bridge";

/** What every iovalkey connection sends besides data commands (ready check, connection name). */
const CONNECTION = ["info", "ping", "client|setname", "client|setinfo", "client|id", "multi", "exec", "discard", "quit"];
/** The worker-host's extras: blocking reads woken by CLIENT UNBLOCK, DURABLE_ACCEPT (WAITAOF, COMMAND INFO), the notifier, cluster topology. */
const HOST_ONLY = ["client|unblock", "waitaof", "command|info", "subscribe", "unsubscribe", "psubscribe", "punsubscribe", "readonly", "cluster|slots", "cluster|shards", "cluster|nodes", "cluster|myid"];

/** The data commands of the REST bridge (its allow-list), in ACL notation (SCRIPT: LOAD and EXISTS only). */
function dataCommands(): string[] {
  return [...ALLOWED_COMMANDS].flatMap((c) => (c === "SCRIPT" ? ["script|load", "script|exists"] : [c.toLowerCase()]));
}

export type AclRole = "host" | "bridge";

/**
 * The commands a role may run, in ACL notation. With `serverCommands` (the
 * server's `COMMAND LIST`, lower case, subcommands as `client|setinfo`) only
 * those the server knows: ACL SETUSER rejects a name it does not know (Redis
 * 7.0 has no HEXPIRE or CLIENT SETINFO).
 */
export function aclCommands(role: AclRole, serverCommands?: ReadonlySet<string>): string[] {
  const all = [...new Set([...dataCommands(), ...CONNECTION, ...(role === "host" ? HOST_ONLY : [])])].sort();
  return serverCommands ? all.filter((c) => serverCommands.has(c)) : all;
}

/** The server's command names for `aclCommands` (COMMAND LIST, lower case). */
export async function serverCommandNames(conn: { call(command: string, ...args: string[]): Promise<unknown> }): Promise<Set<string>> {
  return new Set(((await conn.call("COMMAND", "LIST")) as string[]).map((c) => String(c).toLowerCase()));
}

/**
 * The arguments of `ACL SETUSER` for one user: reset, a password, the
 * project's key and channel patterns, no command but those listed.
 * @example
 * await conn.call("ACL", ...aclSetUserArgs({ user: "edgepipe-host", password, prefix: "ep", role: "host" }));
 */
export function aclSetUserArgs({ user, password, prefix, role, serverCommands }: { user: string; password: string; prefix: string; role: AclRole; serverCommands?: ReadonlySet<string> }): string[] {
  if (!/^[A-Za-z0-9_.-]{1,32}$/.test(prefix)) throw new Error(`invalid key prefix: ${prefix}`);
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(user)) throw new Error(`ACL user names here are 1-64 chars of A-Z a-z 0-9 _ . - (got ${user})`);
  if (!/^[\x21-\x7e]{16,}$/.test(password)) throw new Error("ACL passwords: at least 16 printable characters, no spaces");
  return ["SETUSER", user, "reset", "on", `>${password}`, `~${prefix}:*`, "resetchannels", `&${prefix}:*`, "-@all", ...aclCommands(role, serverCommands).map((c) => `+${c}`)];
}

/** One `ACL SETUSER ...` line, as typed into valkey-cli. */
export function aclSetUserLine(options: Parameters<typeof aclSetUserArgs>[0]): string {
  return ["ACL", ...aclSetUserArgs(options)].join(" ");
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      prefix: { type: "string", default: process.env.KEY_PREFIX || "ep" },
      "host-user": { type: "string", default: "edgepipe-host" },
      "bridge-user": { type: "string", default: "edgepipe-bridge" },
      "host-password": { type: "string" },
      "bridge-password": { type: "string" },
      url: { type: "string" },
    },
  });
  // With --url, fit the command lists to that server (an admin connection; nothing is changed).
  let serverCommands: Set<string> | undefined;
  if (values.url) {
    const { connectValkey, closeConnection } = await import("./valkey");
    const conn = connectValkey(values.url, { name: "edgepipe-acl", log: () => {} });
    try {
      serverCommands = await serverCommandNames(conn);
    } finally {
      await closeConnection(conn, 500);
    }
  }
  const hostPassword = values["host-password"] ?? randomHex(24);
  const bridgePassword = values["bridge-password"] ?? randomHex(24);
  const prefix = values.prefix!;
  console.log(`# ACL users for key prefix "${prefix}" (run these as an admin, e.g. valkey-cli; then ACL SAVE or CONFIG REWRITE to keep them)`);
  if (!serverCommands) console.log("# lists every command the project may use; an older server rejects names it lacks (Redis 7.0: HEXPIRE, CLIENT SETINFO): pass --url redis://admin@host:port to fit them");
  console.log(`# worker-host: VALKEY_URL=redis://${values["host-user"]}:${hostPassword}@<host>:<port>`);
  console.log(aclSetUserLine({ user: values["host-user"]!, password: hostPassword, prefix, role: "host", serverCommands }));
  console.log(`# REST bridge (npm run dev): BRIDGE_VALKEY_URL=redis://${values["bridge-user"]}:${bridgePassword}@<host>:<port>`);
  console.log(aclSetUserLine({ user: values["bridge-user"]!, password: bridgePassword, prefix, role: "bridge", serverCommands }));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main(process.argv.slice(2)).catch((err) => {
    console.error((err as Error).message);
    process.exit(1);
  });
}
