/**
 * A minimal Server-Sent Events reader over fetch, for tests: parses
 * `event:`/`id:`/`data:`/`retry:` fields and hands complete events to a queue.
 */
export interface SseEvent {
  event: string;
  id?: string;
  data: string;
  retry?: number;
}

export interface SseConnection {
  status: number;
  headers: Headers;
  /** The last `id:` the stream carried (what a browser would send as Last-Event-ID). */
  lastEventId(): string | undefined;
  /** Resolves with the next `count` events named `name` (waits for them). */
  next(count: number, name?: string, timeoutMs?: number): Promise<SseEvent[]>;
  /** Every event seen so far. */
  seen: SseEvent[];
  close(): void;
}

/** Opens an SSE stream with fetch; `lastEventId` is sent as the Last-Event-ID header. */
export async function openSse(url: string, { lastEventId }: { lastEventId?: string } = {}): Promise<SseConnection> {
  const abort = new AbortController();
  const res = await fetch(url, { headers: { accept: "text/event-stream", ...(lastEventId ? { "last-event-id": lastEventId } : {}) }, signal: abort.signal });
  const seen: SseEvent[] = [];
  let lastId = lastEventId;
  let consumed = 0;
  let wake: (() => void) | undefined;
  let ended = false;
  const pump = async () => {
    if (!res.body) return;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let current: Partial<SseEvent> & { data?: string } = {};
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let nl: number;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, nl).replace(/\r$/, "");
          buffer = buffer.slice(nl + 1);
          if (line === "") {
            if (current.id !== undefined) lastId = current.id;
            if (current.data !== undefined) seen.push({ event: current.event ?? "message", data: current.data, id: current.id, retry: current.retry });
            current = {};
            wake?.();
            continue;
          }
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "data") current.data = current.data === undefined ? val : `${current.data}\n${val}`;
          else if (field === "event") current.event = val;
          else if (field === "id") current.id = val;
          else if (field === "retry") current.retry = Number(val);
        }
      }
    } catch {
      /* aborted */
    } finally {
      ended = true;
      wake?.();
    }
  };
  void pump();
  return {
    status: res.status,
    headers: res.headers,
    seen,
    lastEventId: () => lastId,
    async next(count, name = "item", timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const matching = seen.slice(consumed).filter((e) => e.event === name);
        if (matching.length >= count) {
          const picked = matching.slice(0, count);
          consumed = seen.indexOf(picked[picked.length - 1]) + 1;
          return picked;
        }
        if (ended) throw new Error(`stream ended after ${matching.length}/${count} ${name} events`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} ${name} events (got ${matching.length})`);
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 200);
        });
      }
    },
    close: () => abort.abort(),
  };
}
