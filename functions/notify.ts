/**
 * Live notifications: a request that waits for news (an SSE stream) can be
 * woken by a Valkey pub/sub message instead of polling. The Node host injects
 * a `ChannelNotifier` as `env.NOTIFIER`; on Workers there is none and callers
 * poll. functions/ never opens a subscriber connection itself.
 */
import type { AppEnv } from "./redis";

export interface ChannelNotifier {
  /** Calls `onMessage` with every message published on `channel`; returns an unsubscribe function. */
  subscribe(channel: string, onMessage: (message: string) => void): () => void;
}

/** The host's notifier in this env, if it injected one. */
export function notifierFromEnv(env: AppEnv): ChannelNotifier | undefined {
  const n = env.NOTIFIER as ChannelNotifier | undefined;
  return typeof n === "object" && n !== null && typeof n.subscribe === "function" ? n : undefined;
}
