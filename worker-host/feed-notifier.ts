/**
 * Node-side FeedNotifier for live SSE streams: one pub/sub connection
 * subscribes to a bucket's channel (keys.feedChannel(b), published by the
 * fan-out script) while at least one stream of that bucket is open, and wakes
 * those streams on every message. Injected as env.FEED_NOTIFIER, so functions/
 * never imports iovalkey.
 */
import type { FeedNotifier } from "../functions/feed-events";
import type { Keys } from "../functions/keys";
import { closeConnection, connectValkey, type Connection } from "./valkey";

export class ValkeyFeedNotifier implements FeedNotifier {
  private readonly listeners = new Map<number, Set<(message: string) => void>>();
  private readonly bucketByChannel = new Map<string, number>();
  private conn: Connection | undefined;

  constructor(
    private readonly url: string,
    private readonly keys: Keys,
    private readonly log: (line: string) => void = console.log,
  ) {}

  /** Registers `onDelivery` for a bucket; the last unsubscribe of a bucket leaves its channel. */
  subscribe(bucket: number, onDelivery: (message: string) => void): () => void {
    const conn = this.connection();
    let set = this.listeners.get(bucket);
    if (!set) {
      set = new Set();
      this.listeners.set(bucket, set);
      const channel = this.keys.feedChannel(bucket);
      this.bucketByChannel.set(channel, bucket);
      conn.subscribe(channel).catch((err: Error) => this.log(`[feed-notifier] subscribe ${channel}: ${err.message}`));
    }
    set.add(onDelivery);
    return () => {
      const current = this.listeners.get(bucket);
      if (!current?.delete(onDelivery) || current.size > 0) return;
      this.listeners.delete(bucket);
      const channel = this.keys.feedChannel(bucket);
      this.bucketByChannel.delete(channel);
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
    const conn = connectValkey(this.url, { name: "edgepipe-feed-notifier", log: this.log });
    conn.on("message", (channel: string, message: string) => {
      const bucket = this.bucketByChannel.get(channel);
      if (bucket === undefined) return;
      for (const onDelivery of this.listeners.get(bucket) ?? []) onDelivery(message);
    });
    this.conn = conn;
    return conn;
  }
}
