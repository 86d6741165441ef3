import { sseData } from "../../services/worker/engines/openai/sse.js";
import { Random } from "../../services/common/random.js";

/** Where the gate sends its requests. */
export interface Target {
  /** The OpenAI-compatible base URL, e.g. http://127.0.0.1:8000 (with or without /v1). */
  readonly url: string;
  readonly model: string;
  readonly apiKey?: string;
}

/** One request as the gate measured it. */
export interface Sample {
  readonly phase: string;
  /** The step's concurrency, or the open-loop phase's rate. */
  readonly level: number;
  /** When it was sent, ms from the gate's start. */
  readonly startMs: number;
  readonly ok: boolean;
  /** Why it failed (an HTTP status, an error event's message, a timeout). */
  readonly error?: string;
  readonly ttftMs?: number;
  readonly e2eMs: number;
  readonly completionTokens?: number;
  /** Mean time between tokens after the first. */
  readonly itlMs?: number;
  readonly longContext: boolean;
}

/** The gate's prompts: short chats and, for `longContextShare` of requests, a long document to answer on. */
export class Prompts {
  private readonly random: Random;

  constructor(
    private readonly longContextShare: number,
    /** The longest prompt to send, in tokens (about 4 characters each); from the model's context when known. */
    private readonly maxPromptTokens = Number.POSITIVE_INFINITY,
    seed = 1,
  ) {
    this.random = new Random(seed);
  }

  next(): { messages: { role: string; content: string }[]; maxTokens: number; longContext: boolean } {
    const longContext = this.random.next() < this.longContextShare;
    const topic = topics[Math.floor(this.random.next() * topics.length)]!;
    if (!longContext) {
      return { messages: [{ role: "user", content: `In a few sentences, ${topic}` }], maxTokens: 128, longContext };
    }
    // 12,000–24,000 characters (about 3,000–6,000 tokens), or what the model's context holds.
    const characters = Math.min(12_000 + Math.floor(this.random.next() * 12_000), this.maxPromptTokens * 4);
    let document = "";
    for (let index = 0; document.length < characters; index += 1) document += `Section ${index + 1}. ${filler[index % filler.length]}\n\n`;
    document = document.slice(0, characters);
    return {
      messages: [
        { role: "system", content: "Answer from the document the user gives; say so when it does not say." },
        { role: "user", content: `${document}\n\nFrom the document above, ${topic}` },
      ],
      maxTokens: 256,
      longContext,
    };
  }
}

const topics = [
  "explain how a queue keeps requests fair between tenants.",
  "summarise what a KV cache holds and why it fills up.",
  "describe how a canary release limits the harm of a bad build.",
  "list what to check before promoting a new model version.",
  "explain why streaming answers feel faster to people.",
];

const filler = [
  "The service keeps a ledger of the memory each device holds and warns when it passes a threshold; above a second one it sends no new work there.",
  "Requests carry a priority class; interactive work goes first, batch work waits and is shed first when the fleet is short of memory.",
  "Each release is tried under a stepped load, a spike and a long soak, and promoted only when every objective holds in every phase.",
  "A router spreads requests over workers by their queues, their cache contents and the sessions they already serve.",
];

/** Sends one streamed chat and measures it; never throws. */
export async function measureOne(
  target: Target,
  prompt: ReturnType<Prompts["next"]>,
  context: { phase: string; level: number; originMs: number; timeoutMs: number },
): Promise<Sample> {
  const started = performance.now();
  const base = { phase: context.phase, level: context.level, startMs: started - context.originMs, longContext: prompt.longContext };
  const elapsed = () => performance.now() - started;
  try {
    const response = await fetch(`${target.url.replace(/\/(v1\/?)?$/, "")}/v1/chat/completions`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(target.apiKey ? { authorization: `Bearer ${target.apiKey}` } : {}),
      },
      body: JSON.stringify({
        model: target.model,
        messages: prompt.messages,
        max_tokens: prompt.maxTokens,
        stream: true,
        stream_options: { include_usage: true },
      }),
      signal: AbortSignal.timeout(context.timeoutMs),
    });
    if (!response.ok || !response.body) {
      await response.body?.cancel().catch(() => undefined);
      return { ...base, ok: false, error: `HTTP ${response.status}`, e2eMs: elapsed() };
    }
    let ttftMs: number | undefined;
    let completionTokens: number | undefined;
    for await (const data of sseData(response.body)) {
      const chunk = JSON.parse(data) as {
        error?: { message?: string };
        choices?: { delta?: { content?: string | null; reasoning_content?: string | null } }[];
        usage?: { completion_tokens?: number } | null;
      };
      if (chunk.error) return { ...base, ok: false, error: chunk.error.message ?? "error event", ttftMs, e2eMs: elapsed() };
      const delta = chunk.choices?.[0]?.delta;
      if (ttftMs === undefined && (delta?.content || delta?.reasoning_content)) ttftMs = elapsed();
      if (chunk.usage?.completion_tokens !== undefined) completionTokens = chunk.usage.completion_tokens;
    }
    const e2eMs = elapsed();
    const itlMs =
      ttftMs !== undefined && completionTokens !== undefined && completionTokens > 1
        ? (e2eMs - ttftMs) / (completionTokens - 1)
        : undefined;
    return { ...base, ok: true, ttftMs, e2eMs, completionTokens, itlMs };
  } catch (error) {
    const reason = error instanceof Error && error.name === "TimeoutError" ? `timed out after ${context.timeoutMs} ms` : String(error);
    return { ...base, ok: false, error: reason, e2eMs: elapsed() };
  }
}

/** `users` clients, each sending its next request when its last ends, for `seconds` (a closed loop). */
export async function closedLoop(
  send: () => Promise<Sample>,
  users: number,
  seconds: number,
  onSample: (sample: Sample) => void,
): Promise<void> {
  const endAt = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: users }, async () => {
      while (performance.now() < endAt) onSample(await send());
    }),
  );
}

/**
 * Requests at `qps` a second for `seconds`, sent on schedule whatever the answers (an
 * open loop: a slow system is not spared arrivals). Past `maxInFlight` a request is
 * not sent and counts as failed.
 */
export async function openLoop(
  send: () => Promise<Sample>,
  qps: number,
  seconds: number,
  maxInFlight: number,
  onSample: (sample: Sample) => void,
  refused: () => Sample,
): Promise<void> {
  const startedAt = performance.now();
  const total = Math.max(1, Math.round(qps * seconds));
  const pending = new Set<Promise<void>>();
  for (let index = 0; index < total; index += 1) {
    const dueAt = startedAt + (index * 1000) / qps;
    const waitMs = dueAt - performance.now();
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    if (pending.size >= maxInFlight) {
      onSample(refused());
      continue;
    }
    const request = send().then(onSample);
    pending.add(request);
    void request.finally(() => pending.delete(request));
  }
  await Promise.all(pending);
}

/**
 * The model's context in tokens, as the endpoint lists it (infermesh's `context_length`,
 * vLLM's `max_model_len`); undefined when it does not say.
 */
export async function modelContext(target: Target): Promise<number | undefined> {
  try {
    const response = await fetch(`${target.url.replace(/\/(v1\/?)?$/, "")}/v1/models`, {
      headers: target.apiKey ? { authorization: `Bearer ${target.apiKey}` } : {},
      signal: AbortSignal.timeout(10_000),
    });
    if (!response.ok) return undefined;
    const { data } = (await response.json()) as { data?: { id: string; context_length?: number; max_model_len?: number }[] };
    const model = data?.find((entry) => entry.id === target.model);
    return model?.context_length ?? model?.max_model_len;
  } catch {
    return undefined;
  }
}
