/**
 * The optional LLM classifier tool: an OpenAI-compatible chat endpoint
 * (LLM_BASE_URL, LLM_API_KEY, LLM_MODEL) or a Workers AI binding (`AI`, with
 * LLM_MODEL), called through the tool cache and the per-tool rate limiter.
 * Used only when configured; the offline classifier is the default.
 */
import type { Keys } from "../keys";
import type { RedisClient } from "../redis";
import { cachedTool } from "../tools/cache";
import { inSpan, type TraceScope } from "../tracing";
import { takeToken } from "../tools/rate-limit";
import { TOPICS, type Topic } from "./classify";
import type { NewsSettings } from "./config";

/** A Workers AI binding, as far as this tool uses it. */
interface WorkersAi {
  run(model: string, input: { messages: Array<{ role: string; content: string }> }): Promise<{ response?: string } | unknown>;
}

export type LlmBackend = { kind: "openai"; baseUrl: string; apiKey?: string; model: string } | { kind: "workers-ai"; ai: WorkersAi; model: string };

/** The configured LLM backend, or undefined (then the offline classifier runs). */
export function llmBackend(env: Record<string, unknown>, settings: NewsSettings): LlmBackend | undefined {
  if (settings.LLM_BASE_URL) {
    return { kind: "openai", baseUrl: settings.LLM_BASE_URL.replace(/\/+$/, ""), apiKey: settings.LLM_API_KEY, model: settings.LLM_MODEL ?? "gpt-4o-mini" };
  }
  const ai = env.AI as WorkersAi | undefined;
  if (ai && typeof ai.run === "function" && settings.LLM_MODEL) return { kind: "workers-ai", ai, model: settings.LLM_MODEL };
  return undefined;
}

function prompt(title: string, body: string): Array<{ role: string; content: string }> {
  return [
    {
      role: "system",
      content: `You classify news articles. Answer with exactly one word from this list and nothing else: ${TOPICS.join(", ")}.`,
    },
    { role: "user", content: `Title: ${title}\n\n${body.slice(0, 2000)}` },
  ];
}

/** The first topic word in a model's answer, if any. */
export function topicFromAnswer(answer: string): Topic | undefined {
  const words = answer.toLowerCase().match(/[a-z]+/g) ?? [];
  const known = new Set<string>(TOPICS);
  return words.find((w) => known.has(w)) as Topic | undefined;
}

/**
 * A classification call's tokens before it is made: the prompt at ~4
 * characters a token, plus the answer's cap (max_tokens 5). The stage's
 * budget charges this first and is corrected by the usage the endpoint reports.
 */
export function estimateLlmTokens(title: string, body: string): number {
  const text = prompt(title, body).reduce((n, m) => n + m.content.length, 0);
  return Math.ceil(text / 4) + 5;
}

async function ask(backend: LlmBackend, title: string, body: string): Promise<{ answer: string; usedTokens: number }> {
  if (backend.kind === "workers-ai") {
    const out = (await backend.ai.run(backend.model, { messages: prompt(title, body) })) as { response?: string; usage?: { total_tokens?: number } };
    return { answer: String(out?.response ?? ""), usedTokens: Number(out?.usage?.total_tokens) || estimateLlmTokens(title, body) };
  }
  const res = await fetch(`${backend.baseUrl}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(backend.apiKey ? { authorization: `Bearer ${backend.apiKey}` } : {}) },
    body: JSON.stringify({ model: backend.model, messages: prompt(title, body), temperature: 0, max_tokens: 5 }),
    signal: AbortSignal.timeout(20_000),
  });
  if (!res.ok) throw new Error(`LLM endpoint answered ${res.status}: ${(await res.text()).slice(0, 200)}`);
  const json = (await res.json()) as { choices?: Array<{ message?: { content?: string } }>; usage?: { total_tokens?: number } };
  return { answer: String(json.choices?.[0]?.message?.content ?? ""), usedTokens: Number(json.usage?.total_tokens) || estimateLlmTokens(title, body) };
}

/** Classifies with the LLM through the tool cache ("llm-classify"); throws when the answer names no topic. */
export async function classifyWithLlm(
  redis: RedisClient,
  keys: Keys,
  backend: LlmBackend,
  settings: NewsSettings,
  title: string,
  body: string,
  trace?: TraceScope,
): Promise<{ topic: Topic; hit: boolean; tokens: number }> {
  // Tokens the endpoint says this call used (0 on a cache hit), reported to the stage's budget.
  let tokens = 0;
  const { value, hit } = await cachedTool(redis, keys, {
    tool: "llm-classify",
    args: { kind: backend.kind, model: backend.model, title, body: body.slice(0, 2000) },
    ttlSeconds: settings.LLM_CACHE_TTL_SECONDS,
    lockMs: 25_000,
    trace,
    fn: async (span) => {
      await takeToken(redis, keys, "llm-classify", { burst: settings.LLM_RATE_BURST, perSecond: settings.LLM_RATE_PER_SECOND }, { maxWaitMs: 10_000 });
      const { answer, usedTokens } = await inSpan(span, "llm classify", async (llm) => {
        llm?.setAttribute("gen_ai.operation.name", "chat");
        llm?.setAttribute("gen_ai.request.model", backend.model);
        const asked = await ask(backend, title, body);
        llm?.setAttribute("gen_ai.usage.total_tokens", asked.usedTokens);
        return asked;
      });
      tokens = usedTokens;
      const topic = topicFromAnswer(answer);
      if (!topic) throw new Error(`LLM answer names no known topic: ${answer.slice(0, 80)}`);
      return topic;
    },
  });
  return { topic: value, hit, tokens };
}
