/**
 * Node-side ChannelNotifier (functions/notify.ts): one pub/sub connection
 * subscribes to a channel while at least one listener wants it and calls the
 * listeners on every message. Injected as env.NOTIFIER, so functions/ never
 * imports iovalkey. Apps pick the channels (the news app: a feed bucket's).
 */
import type { ChannelNotifier } from "../functions/notify";
import { closeConnection, type Connection } from "./valkey";

export class ValkeyNotifier implements ChannelNotifier {
  private readonly listeners = new Map<string, Set<(message: string) => void>>();
  private conn: Connection | undefined;

  /** `open` makes the subscriber connection (on a cluster, a Cluster client whose subscriber sits on one node). */
  constructor(
    private readonly open: () => Connection,
    private readonly log: (line: string) => void = console.log,
  ) {}

  /** Registers `onMessage` for a channel; the last unsubscribe of a channel leaves it. */
  subscribe(channel: string, onMessage: (message: string) => void): () => void {
    const conn = this.connection();
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
      conn.subscribe(channel).catch((err: Error) => this.log(`[notifier] subscribe ${channel}: ${err.message}`));
    }
    set.add(onMessage);
    return () => {
      const current = this.listeners.get(channel);
      if (!current?.delete(onMessage) || current.size > 0) return;
      this.listeners.delete(channel);
      this.conn?.unsubscribe(channel).catch(() => undefined);
    };
  }

  /** Closes the subscriber connection. */
  async close(): Promise<void> {
    this.listeners.clear();
    const conn = this.conn;
    this.conn = undefined;
    if (conn) await closeConnection(conn, 500);
  }

  private connection(): Connection {
    if (this.conn) return this.conn;
    // A subscribed connection can run no other commands, so it gets its own.
    // Trouble is logged once per outage; iovalkey resubscribes on reconnect.
    const conn = this.open();
    conn.on("message", (channel: string, message: string) => {
      for (const onMessage of this.listeners.get(channel) ?? []) onMessage(message);
    });
    this.conn = conn;
    return conn;
  }
}
