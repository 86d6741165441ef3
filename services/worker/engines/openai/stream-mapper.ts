import { FinishReason, type TokenLogprob } from "../../../../gen/infermesh/common/v1/common.js";
import type { IndexedToolCall } from "../../../../gen/infermesh/worker/v1/worker_service.js";
import type { GenerationEvent } from "../engine.js";

/** An error the upstream reported inside an event stream. */
export class UpstreamStreamError extends Error {
  override readonly name = "UpstreamStreamError";
  constructor(
    message: string,
    /** The HTTP-like status the upstream gave the error, when it gave one. */
    readonly status: number | undefined,
  ) {
    super(message);
  }
}

interface Usage {
  readonly promptTokens: number | undefined;
  readonly completionTokens: number | undefined;
  readonly cachedTokens: number | undefined;
  readonly reasoningTokens: number | undefined;
}

interface PartialToolCall {
  id: string;
  name: string;
  arguments: string;
  emitted: boolean;
}

/**
 * Turns the JSON chunks of one streamed chat or text completion into GenerationEvents.
 *
 * `started` goes out with the first chunk: its prompt-token count is the upstream's when
 * that chunk carries usage (vLLM and SGLang with stream_options.continuous_usage_stats),
 * else the estimate from the request text — OpenAI-style servers report usage only in
 * the last chunk, and waiting for it would hold back every token. `finished` carries the
 * upstream's own counts from its usage chunk. Tool-call fragments are passed on by
 * index as they come (see acceptToolCalls).
 */
export class StreamMapper {
  private started = false;
  /** Whether every chunk carries usage (it did on the first), so token counts can follow it. */
  private continuousUsage = false;
  private finishReason: FinishReason | undefined;
  private usage: Usage | undefined;
  private countedTokens = 0;
  private lastUsageCompletionTokens = 0;
  private readonly toolCalls = new Map<number, PartialToolCall>();

  constructor(
    private readonly options: {
      readonly estimatedPromptTokens: number;
      readonly maxTokens: number;
    },
  ) {}

  get hasStarted(): boolean {
    return this.started;
  }

  /** Events for one chunk (the parsed `data:` of one SSE event). Throws UpstreamStreamError for an error chunk. */
  push(chunk: unknown): GenerationEvent[] {
    if (typeof chunk !== "object" || chunk === null)
      throw new UpstreamStreamError("the upstream sent a chunk that is not a JSON object", undefined);
    const record = chunk as Record<string, unknown>;
    throwIfError(record);
    const events: GenerationEvent[] = [];
    const usage = usageOf(record.usage);
    if (usage) this.usage = usage;
    if (!this.started) {
      this.started = true;
      this.continuousUsage = usage?.completionTokens !== undefined;
      events.push({
        kind: "started",
        promptTokens: usage?.promptTokens ?? this.options.estimatedPromptTokens,
        cachedTokens: usage?.cachedTokens ?? 0,
        maxTokens: this.options.maxTokens,
      });
    }
    const choices = Array.isArray(record.choices) ? (record.choices as Record<string, unknown>[]) : [];
    const choice = choices.find((candidate) => (candidate.index ?? 0) === 0);
    if (choice === undefined) return events;

    const delta = (choice.delta ?? {}) as Record<string, unknown>;
    const text = stringOr(delta.content) ?? stringOr(choice.text) ?? "";
    const reasoningText = stringOr(delta.reasoning_content) ?? stringOr(delta.reasoning) ?? "";
    const logprobs = logprobsOf(choice.logprobs);
    const toolCalls = this.acceptToolCalls(delta.tool_calls);
    const finishReason = stringOr(choice.finish_reason);
    if (finishReason !== undefined) {
      this.finishReason = finishReasonOf(finishReason);
      toolCalls.push(...this.flushToolCalls());
    }

    let tokenCount: number;
    if (this.continuousUsage && usage?.completionTokens !== undefined) {
      tokenCount = Math.max(0, usage.completionTokens - this.lastUsageCompletionTokens);
      this.lastUsageCompletionTokens = usage.completionTokens;
    } else if (logprobs.length > 0) {
      tokenCount = logprobs.length;
    } else {
      tokenCount = text !== "" || reasoningText !== "" || Array.isArray(delta.tool_calls) ? 1 : 0;
    }
    this.countedTokens += tokenCount;

    if (text !== "" || reasoningText !== "" || logprobs.length > 0 || toolCalls.length > 0 || tokenCount > 0) {
      events.push({
        kind: "delta",
        text,
        ...(reasoningText !== "" ? { reasoningText } : {}),
        tokenCount,
        ...(logprobs.length > 0 ? { logprobs } : {}),
        ...(toolCalls.length > 0 ? { toolCalls } : {}),
      });
    }
    return events;
  }

  /** Events when the stream ends normally; throws when the choice never finished. */
  end(): GenerationEvent[] {
    if (this.finishReason === undefined)
      throw new UpstreamStreamError("the upstream closed the stream before the generation finished", undefined);
    const events: GenerationEvent[] = [];
    const pending = this.flushToolCalls();
    if (pending.length > 0) events.push({ kind: "delta", text: "", tokenCount: 0, toolCalls: pending });
    events.push(this.finished(this.finishReason));
    return events;
  }

  /** The finished event of a generation the caller cancelled after it started. */
  cancelled(): GenerationEvent {
    return this.finished(FinishReason.FINISH_REASON_CANCELLED);
  }

  private finished(finishReason: FinishReason): GenerationEvent {
    return {
      kind: "finished",
      finishReason,
      promptTokens: this.usage?.promptTokens ?? this.options.estimatedPromptTokens,
      completionTokens: this.usage?.completionTokens ?? this.countedTokens,
      cachedTokens: this.usage?.cachedTokens ?? 0,
      reasoningTokens: this.usage?.reasoningTokens ?? 0,
    };
  }

  /**
   * Passes the upstream's tool-call fragments on as they come: a call's first fragment
   * once its name is known (with its id and the arguments so far), then each piece of
   * arguments. A call whose name never came goes out when the choice finishes.
   */
  private acceptToolCalls(fragments: unknown): IndexedToolCall[] {
    if (!Array.isArray(fragments)) return [];
    const out: IndexedToolCall[] = [];
    for (const [position, fragment] of fragments.entries()) {
      if (typeof fragment !== "object" || fragment === null) continue;
      const record = fragment as Record<string, unknown>;
      const index = typeof record.index === "number" ? record.index : position;
      const call = this.toolCalls.get(index) ?? { id: "", name: "", arguments: "", emitted: false };
      const fn = (record.function ?? {}) as Record<string, unknown>;
      if (typeof record.id === "string" && record.id !== "") call.id = record.id;
      if (typeof fn.name === "string") call.name += fn.name;
      const more = typeof fn.arguments === "string" ? fn.arguments : "";
      this.toolCalls.set(index, call);
      if (call.emitted) {
        if (more !== "") out.push({ index, call: { id: "", name: "", arguments: more } });
        continue;
      }
      call.arguments += more;
      if (call.name !== "") out.push(this.start(index, call));
    }
    return out;
  }

  private flushToolCalls(): IndexedToolCall[] {
    return [...this.toolCalls.entries()].filter(([, call]) => !call.emitted).map(([index, call]) => this.start(index, call));
  }

  private start(index: number, call: PartialToolCall): IndexedToolCall {
    call.emitted = true;
    return { index, call: { id: call.id || `call_${index}`, name: call.name, arguments: call.arguments } };
  }
}

function throwIfError(record: Record<string, unknown>): void {
  const error = record.error;
  if (typeof error === "object" && error !== null) {
    const details = error as Record<string, unknown>;
    throw new UpstreamStreamError(stringOr(details.message) ?? "the upstream reported an error", statusOf(details.code));
  }
  if (typeof error === "string") throw new UpstreamStreamError(error, undefined);
  if (record.object === "error") {
    throw new UpstreamStreamError(stringOr(record.message) ?? "the upstream reported an error", statusOf(record.code));
  }
}

function statusOf(code: unknown): number | undefined {
  const status = typeof code === "number" ? code : typeof code === "string" ? Number(code) : Number.NaN;
  return Number.isInteger(status) && status >= 400 && status < 600 ? status : undefined;
}

function usageOf(value: unknown): Usage | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const usage = value as Record<string, unknown>;
  const promptDetails = (usage.prompt_tokens_details ?? {}) as Record<string, unknown>;
  const completionDetails = (usage.completion_tokens_details ?? {}) as Record<string, unknown>;
  return {
    promptTokens: numberOr(usage.prompt_tokens),
    completionTokens: numberOr(usage.completion_tokens),
    cachedTokens: numberOr(promptDetails?.cached_tokens),
    reasoningTokens: numberOr(completionDetails?.reasoning_tokens),
  };
}

/** Chat logprobs (`logprobs.content[]`) or the completions API's parallel arrays. */
function logprobsOf(value: unknown): TokenLogprob[] {
  if (typeof value !== "object" || value === null) return [];
  const record = value as Record<string, unknown>;
  if (Array.isArray(record.content)) {
    return (record.content as Record<string, unknown>[]).map((entry) => ({
      token: stringOr(entry.token) ?? "",
      logprob: numberOr(entry.logprob) ?? 0,
      bytes: bytesOf(entry.bytes, stringOr(entry.token) ?? ""),
      topLogprobs: (Array.isArray(entry.top_logprobs) ? (entry.top_logprobs as Record<string, unknown>[]) : []).map((top) => ({
        token: stringOr(top.token) ?? "",
        logprob: numberOr(top.logprob) ?? 0,
        bytes: bytesOf(top.bytes, stringOr(top.token) ?? ""),
      })),
    }));
  }
  if (Array.isArray(record.tokens)) {
    const tokens = record.tokens as unknown[];
    const logprobs = Array.isArray(record.token_logprobs) ? (record.token_logprobs as unknown[]) : [];
    const tops = Array.isArray(record.top_logprobs) ? (record.top_logprobs as unknown[]) : [];
    return tokens.map((token, index) => {
      const text = String(token);
      const top = tops[index];
      const alternatives = typeof top === "object" && top !== null ? Object.entries(top as Record<string, unknown>) : [];
      return {
        token: text,
        logprob: numberOr(logprobs[index]) ?? 0,
        bytes: Buffer.from(text, "utf8"),
        topLogprobs: alternatives
          .map(([alternative, logprob]) => ({
            token: alternative,
            logprob: numberOr(logprob) ?? 0,
            bytes: Buffer.from(alternative, "utf8"),
          }))
          .sort((a, b) => b.logprob - a.logprob),
      };
    });
  }
  return [];
}

function bytesOf(bytes: unknown, token: string): Buffer {
  return Array.isArray(bytes) && bytes.every((byte) => typeof byte === "number")
    ? Buffer.from(bytes as number[])
    : Buffer.from(token, "utf8");
}

export function finishReasonOf(reason: string): FinishReason {
  switch (reason) {
    case "length":
      return FinishReason.FINISH_REASON_LENGTH;
    case "tool_calls":
    case "function_call":
      return FinishReason.FINISH_REASON_TOOL_CALLS;
    case "abort":
    case "cancelled":
      return FinishReason.FINISH_REASON_CANCELLED;
    case "error":
      return FinishReason.FINISH_REASON_ERROR;
    default:
      // "stop", "eos", "content_filter" and engine-specific reasons all mean: ended normally.
      return FinishReason.FINISH_REASON_STOP;
  }
}

const stringOr = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined);
const numberOr = (value: unknown): number | undefined => (typeof value === "number" && Number.isFinite(value) ? value : undefined);
