/**
 * The optional LLM summary of the enricher (LLM_SUMMARY=on): an
 * OpenAI-compatible streaming chat completion (`stream: true`, server-sent
 * `data:` lines with `choices[0].delta.content`), whose tokens go to the run's
 * streamed output as they arrive. The extractive summary stays the default.
 */
import type { RunStream } from "../run-stream";
import { inSpan, type ActiveSpan, type TraceScope } from "../tracing";
import type { NewsSettings } from "./config";

/** Longest summary kept (characters); a model that rambles is cut here. */
export const MAX_LLM_SUMMARY_CHARS = 600;

export interface SummaryBackend {
  baseUrl: string;
  apiKey?: string;
  model: string;
}

/** The summary endpoint when LLM_SUMMARY=on (its own base URL and model, else the classifier's). */
export function summaryBackend(settings: NewsSettings): SummaryBackend | undefined {
  if (settings.LLM_SUMMARY !== "on") return undefined;
  const baseUrl = settings.LLM_SUMMARY_BASE_URL ?? settings.LLM_BASE_URL;
  if (!baseUrl) throw new Error("LLM_SUMMARY=on needs LLM_SUMMARY_BASE_URL (or LLM_BASE_URL)");
  return { baseUrl: baseUrl.replace(/\/+$/, ""), apiKey: settings.LLM_API_KEY, model: settings.LLM_SUMMARY_MODEL ?? settings.LLM_MODEL ?? "gpt-4o-mini" };
}

/**
 * Streams a two-sentence summary from the model into `stream`, one chunk per
 * token the endpoint sends, and answers the whole text.
 */
export async function streamLlmSummary(backend: SummaryBackend, title: string, body: string, stream: RunStream, { timeoutMs = 60_000, trace }: { timeoutMs?: number; trace?: TraceScope } = {}): Promise<string> {
  // Traced: an `llm summary` span (model, chunks, characters, a `first token` event).
  return inSpan(trace, "llm summary", (span) => summarize(backend, title, body, stream, timeoutMs, span), { "gen_ai.operation.name": "chat", "gen_ai.request.model": backend.model });
}

async function summarize(backend: SummaryBackend, title: string, body: string, stream: RunStream, timeoutMs: number, span: ActiveSpan | undefined): Promise<string> {
  const res = await fetch(`${backend.baseUrl}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "text/event-stream", ...(backend.apiKey ? { authorization: `Bearer ${backend.apiKey}` } : {}) },
    body: JSON.stringify({
      model: backend.model,
      stream: true,
      temperature: 0.2,
      max_tokens: 160,
      messages: [
        { role: "system", content: "Summarize the news article in at most two sentences. Answer with the summary only." },
        { role: "user", content: `Title: ${title}\n\n${body.slice(0, 4000)}` },
      ],
    }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!res.ok || !res.body) throw new Error(`LLM summary endpoint answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let text = "";
  const writes: Promise<void>[] = [];
  for (let done = false; !done; ) {
    const read = await reader.read();
    if (read.done) break;
    buffer += read.value;
    let nl: number;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, "");
      buffer = buffer.slice(nl + 1);
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") {
        done = true;
        break;
      }
      let token: unknown;
      try {
        token = (JSON.parse(data) as { choices?: Array<{ delta?: { content?: unknown } }> }).choices?.[0]?.delta?.content;
      } catch {
        throw new Error(`LLM summary endpoint sent a line that is not JSON: ${data.slice(0, 100)}`);
      }
      if (typeof token === "string" && token.length > 0) {
        if (span && writes.length === 0) span.addEvent("first token");
        text += token;
        writes.push(stream.write(token));
      }
    }
  }
  await reader.cancel().catch(() => undefined);
  await Promise.all(writes);
  span?.setAttribute("edgepipe.llm.chunks", writes.length);
  const summary = text.trim().slice(0, MAX_LLM_SUMMARY_CHARS);
  span?.setAttribute("edgepipe.llm.summary_chars", summary.length);
  if (!summary) throw new Error("LLM summary endpoint sent no text");
  return summary;
}
