/** OpenAI JSON ↔ infermesh proto, for chat completions and completions. */
import { createHash } from "node:crypto";
import {
  ChatMessage,
  FinishReason,
  ReasoningEffort,
  type ResponseFormat,
  SamplingParams,
  Tool,
  type ModelInfo,
  type TokenLogprob,
  type ToolCall,
  type Usage,
} from "../../gen/infermesh/common/v1/common.js";
import type { ChatCompletionBody, ChatCompletionMessage } from "../http/chat-completions/schema.js";
import { contentText } from "../http/chat-completions/schema.js";
import type { CompletionBody } from "../http/completions/schema.js";
import type { GenerationValues } from "../validation/generation.js";

/** The sampling fields chat completions and completions share, as parsed. */
export interface SamplingBody {
  readonly max_tokens?: number | null;
  readonly temperature?: number | null;
  readonly top_p?: number | null;
  readonly top_k?: number | null;
  readonly min_p?: number | null;
  readonly repetition_penalty?: number | null;
  readonly seed?: number | null;
  readonly stop?: string | string[] | null;
  readonly presence_penalty?: number | null;
  readonly frequency_penalty?: number | null;
  readonly n?: number | null;
}

/** SamplingParams for a body; `maxTokens` is the bound already resolved from body and profile. */
export function samplingParams(body: SamplingBody, maxTokens: number | undefined, extra: Partial<SamplingParams> = {}): SamplingParams {
  return SamplingParams.create({
    temperature: body.temperature ?? undefined,
    topP: body.top_p ?? undefined,
    topK: body.top_k ?? undefined,
    minP: body.min_p ?? undefined,
    repetitionPenalty: body.repetition_penalty ?? undefined,
    // OpenAI's seed is a 64-bit integer; the engines take 32 bits.
    seed: body.seed == null ? undefined : Number(BigInt.asUintN(32, BigInt(body.seed))),
    stop: body.stop == null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop,
    maxTokens,
    presencePenalty: body.presence_penalty ?? undefined,
    frequencyPenalty: body.frequency_penalty ?? undefined,
    n: body.n ?? undefined,
    ...extra,
  });
}

/** A chat completion body as the values the shared validation checks and the worker gets. */
export function chatGenerationOf(body: ChatCompletionBody): GenerationValues {
  return {
    messages: body.messages.map(toChatMessage),
    prompt: undefined,
    sampling: samplingParams(body, body.max_completion_tokens ?? body.max_tokens ?? undefined, {
      logprobs: body.logprobs === true,
      topLogprobs: body.top_logprobs ?? 0,
      responseFormat: toResponseFormat(body.response_format),
    }),
    tools: toTools(body),
    toolChoice: toToolChoice(body),
    reasoningEffort: toReasoningEffort(body.reasoning_effort),
  };
}

/** A completions body, with one of its prompts, as generation values. */
export function completionGenerationOf(body: CompletionBody, prompt: string): GenerationValues {
  return {
    messages: [],
    prompt,
    sampling: samplingParams(body, body.max_tokens ?? undefined, { logprobs: body.logprobs != null, topLogprobs: body.logprobs ?? 0 }),
    tools: [],
    toolChoice: "",
    reasoningEffort: ReasoningEffort.REASONING_EFFORT_UNSPECIFIED,
  };
}

/** The proto form of one OpenAI chat message. */
export function toChatMessage(message: ChatCompletionMessage): ChatMessage {
  switch (message.role) {
    case "assistant":
      return ChatMessage.create({
        role: "assistant",
        content: contentText(message.content),
        name: message.name,
        toolCalls: (message.tool_calls ?? []).map((call) => ({
          id: call.id,
          name: call.function.name,
          arguments: call.function.arguments,
        })),
        reasoningContent: message.reasoning_content ?? "",
      });
    case "tool":
      return ChatMessage.create({ role: "tool", content: contentText(message.content), toolCallId: message.tool_call_id });
    default:
      return ChatMessage.create({ role: message.role, content: contentText(message.content), name: message.name });
  }
}

export function toTools(body: ChatCompletionBody): Tool[] {
  return (body.tools ?? []).map((tool) =>
    Tool.create({
      name: tool.function.name,
      description: tool.function.description ?? "",
      parametersJson: tool.function.parameters === undefined ? "" : JSON.stringify(tool.function.parameters),
    }),
  );
}

/** The worker's tool_choice: "", "none", "auto", "required" or a function's name. */
export function toToolChoice(body: ChatCompletionBody): string {
  const choice = body.tool_choice;
  if (choice == null) return "";
  return typeof choice === "string" ? choice : choice.function.name;
}

/** gpt-oss knows low, medium and high; OpenAI's none and minimal become low. */
export function toReasoningEffort(effort: ChatCompletionBody["reasoning_effort"]): ReasoningEffort {
  switch (effort) {
    case "none":
    case "minimal":
    case "low":
      return ReasoningEffort.REASONING_EFFORT_LOW;
    case "medium":
      return ReasoningEffort.REASONING_EFFORT_MEDIUM;
    case "high":
      return ReasoningEffort.REASONING_EFFORT_HIGH;
    default:
      return ReasoningEffort.REASONING_EFFORT_UNSPECIFIED;
  }
}

export function toResponseFormat(format: ChatCompletionBody["response_format"]): ResponseFormat | undefined {
  if (format == null || format.type === "text") return undefined;
  if (format.type === "json_object") return { format: { $case: "jsonObject", value: {} } };
  return {
    format: { $case: "jsonSchema", value: { name: format.json_schema.name, schemaJson: JSON.stringify(format.json_schema.schema ?? {}) } },
  };
}

/** OpenAI's finish_reason. A cancelled or failed choice never reaches a client as a reason. */
export function finishReasonText(reason: FinishReason): "stop" | "length" | "tool_calls" {
  if (reason === FinishReason.FINISH_REASON_LENGTH) return "length";
  if (reason === FinishReason.FINISH_REASON_TOOL_CALLS) return "tool_calls";
  return "stop";
}

export function usageBody(usage: Usage | undefined) {
  const promptTokens = usage?.promptTokens ?? 0;
  const completionTokens = usage?.completionTokens ?? 0;
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: usage?.cachedTokens ?? 0 },
    completion_tokens_details: { reasoning_tokens: usage?.reasoningTokens ?? 0 },
  };
}

/** Chat logprobs content entries. */
export const logprobsContent = (logprobs: readonly TokenLogprob[]) =>
  logprobs.map((entry) => ({
    token: entry.token,
    logprob: entry.logprob,
    bytes: [...entry.bytes],
    top_logprobs: entry.topLogprobs.map((top) => ({ token: top.token, logprob: top.logprob, bytes: [...top.bytes] })),
  }));

/** tool_calls of a whole message (a stream's are tool-calls.ts's toolCallDeltas). */
export const toolCallsBody = (calls: readonly ToolCall[]) =>
  calls.map((call) => ({
    id: call.id,
    type: "function" as const,
    function: { name: call.name, arguments: call.arguments },
  }));

/**
 * The system_fingerprint of a model's backend: the same for every worker that serves
 * the same model with the same engine and context, so a change of it tells a client
 * that seeded outputs may change.
 */
export function systemFingerprint(model: ModelInfo | undefined, modelId: string): string {
  const identity = model ? `${model.id}|${model.engine}|${model.contextTokens}|${model.description}` : modelId;
  let fingerprint = fingerprints.get(identity);
  if (fingerprint === undefined) {
    fingerprint = `fp_${createHash("sha256").update(identity).digest("hex").slice(0, 10)}`;
    // A fleet serves a handful of backends; the bound only guards against churn.
    if (fingerprints.size >= 1_024) fingerprints.clear();
    fingerprints.set(identity, fingerprint);
  }
  return fingerprint;
}

/** Fingerprints by backend identity: computed once, not per request. */
const fingerprints = new Map<string, string>();
