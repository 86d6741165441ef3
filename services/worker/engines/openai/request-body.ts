import { ReasoningEffort, type ChatMessage, type SamplingParams, type Tool } from "../../../../gen/infermesh/common/v1/common.js";
import { classNames } from "../../../common/priority-classes.js";
import { EngineError, generationUrgency, type GenerationInput } from "../engine.js";
import type { PriorityOrder } from "./options.js";

/** One upstream generation request: which endpoint, and its JSON body. */
export interface UpstreamRequest {
  readonly path: "/v1/chat/completions" | "/v1/completions";
  readonly body: Record<string, unknown>;
  /** The output bound: the request's, or (none sent upstream) the context's room the prompt leaves. */
  readonly maxTokens: number;
  /** Prompt tokens guessed from the text, for `started` when the upstream has not said yet. */
  readonly estimatedPromptTokens: number;
}

export interface RequestDefaults {
  /** The model's context window: the bound of a request that sets none. */
  readonly contextTokens: number;
  /** Ask for usage on every chunk (vLLM's and SGLang's stream_options.continuous_usage_stats). */
  readonly continuousUsage: boolean;
  /** Send the priority class as `priority`: interactive 0, standard 1, batch 2, or the reverse for "higher-first". */
  readonly priorityOrder: PriorityOrder;
}

/** Builds the OpenAI body for one choice of `input`; invalid JSON in tools or schemas is an invalid_argument. */
export function buildUpstreamRequest(input: GenerationInput, defaults: RequestDefaults): UpstreamRequest {
  const chat = input.prompt === undefined;
  if (chat && input.messages.length === 0) throw new EngineError("invalid_argument", "messages must not be empty");
  if (!chat && input.tools.length > 0) throw new EngineError("invalid_argument", "tools need chat messages, not a raw prompt");
  const estimatedPromptTokens = chat ? estimateChatTokens(input.messages) : estimateTextTokens(input.prompt!);
  // The gateway always sends the request's bound. Without one the upstream applies its
  // own (the context's room): the estimate of that room is only this worker's accounting.
  const maxTokens = input.sampling.maxTokens ?? Math.max(1, defaults.contextTokens - estimatedPromptTokens);

  const body: Record<string, unknown> = { model: input.model };
  if (chat) body.messages = input.messages.map(toOpenAiMessage);
  else body.prompt = input.prompt;
  Object.assign(body, samplingFields(input.sampling, chat), { n: 1, stream: true });
  if (input.sampling.maxTokens !== undefined) body.max_tokens = input.sampling.maxTokens;
  body.stream_options = defaults.continuousUsage ? { include_usage: true, continuous_usage_stats: true } : { include_usage: true };
  if (chat) {
    if (input.tools.length > 0) {
      body.tools = input.tools.map(toOpenAiTool);
      body.tool_choice = toolChoice(input.toolChoice);
    }
    const effort = reasoningEffortText(input.reasoningEffort);
    if (effort !== undefined) body.reasoning_effort = effort;
  }
  if (defaults.priorityOrder !== "off") {
    const urgency = generationUrgency(input);
    body.priority = defaults.priorityOrder === "lower-first" ? urgency : classNames.length - 1 - urgency;
  }
  return { path: chat ? "/v1/chat/completions" : "/v1/completions", body, maxTokens, estimatedPromptTokens };
}

/** OpenAI sampling fields; top_k, min_p and repetition_penalty (vLLM/SGLang extras) only when set. */
function samplingFields(sampling: SamplingParams, chat: boolean): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  if (sampling.temperature !== undefined) fields.temperature = sampling.temperature;
  if (sampling.topP !== undefined) fields.top_p = sampling.topP;
  if (sampling.seed !== undefined) fields.seed = sampling.seed;
  if (sampling.stop.length > 0) fields.stop = sampling.stop;
  if (sampling.presencePenalty !== undefined) fields.presence_penalty = sampling.presencePenalty;
  if (sampling.frequencyPenalty !== undefined) fields.frequency_penalty = sampling.frequencyPenalty;
  if (sampling.topK !== undefined) fields.top_k = sampling.topK;
  if (sampling.minP !== undefined) fields.min_p = sampling.minP;
  if (sampling.repetitionPenalty !== undefined) fields.repetition_penalty = sampling.repetitionPenalty;
  if (sampling.logprobs) {
    if (chat) {
      fields.logprobs = true;
      if (sampling.topLogprobs > 0) fields.top_logprobs = sampling.topLogprobs;
    } else {
      // The completions API takes the number of alternatives in `logprobs` itself.
      fields.logprobs = sampling.topLogprobs;
    }
  }
  const format = sampling.responseFormat?.format;
  if (format?.$case === "jsonObject") fields.response_format = { type: "json_object" };
  if (format?.$case === "jsonSchema") {
    fields.response_format = {
      type: "json_schema",
      json_schema: { name: format.value.name || "response", schema: parseJson(format.value.schemaJson, "response_format.json_schema") },
    };
  }
  return fields;
}

export function toOpenAiMessage(message: ChatMessage): Record<string, unknown> {
  const out: Record<string, unknown> = { role: message.role, content: message.content };
  if (message.name !== undefined && message.name !== "") out.name = message.name;
  if (message.role === "tool") out.tool_call_id = message.toolCallId;
  if (message.toolCalls.length > 0) {
    out.tool_calls = message.toolCalls.map((call) => ({
      id: call.id,
      type: "function",
      function: { name: call.name, arguments: call.arguments },
    }));
    if (message.content === "") out.content = null;
  }
  if (message.reasoningContent !== "") out.reasoning_content = message.reasoningContent;
  return out;
}

function toOpenAiTool(tool: Tool): Record<string, unknown> {
  const parameters =
    tool.parametersJson === "" ? { type: "object", properties: {} } : parseJson(tool.parametersJson, `tools.${tool.name}.parameters`);
  return { type: "function", function: { name: tool.name, description: tool.description, parameters } };
}

function toolChoice(choice: string): unknown {
  if (choice === "" || choice === "auto") return "auto";
  if (choice === "none" || choice === "required") return choice;
  return { type: "function", function: { name: choice } };
}

function reasoningEffortText(effort: ReasoningEffort): string | undefined {
  switch (effort) {
    case ReasoningEffort.REASONING_EFFORT_LOW:
      return "low";
    case ReasoningEffort.REASONING_EFFORT_MEDIUM:
      return "medium";
    case ReasoningEffort.REASONING_EFFORT_HIGH:
      return "high";
    default:
      return undefined;
  }
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new EngineError("invalid_argument", `${what} is not valid JSON`);
  }
}

/**
 * Prompt tokens guessed from text: about four characters a token for English BPE
 * vocabularies, plus a few tokens of chat template per message. Used only until the
 * upstream reports its real count.
 */
export function estimateChatTokens(messages: readonly ChatMessage[]): number {
  let tokens = 3;
  for (const message of messages) {
    tokens += 4 + estimateTextTokens(message.content) + estimateTextTokens(message.reasoningContent);
    for (const call of message.toolCalls) tokens += estimateTextTokens(call.name) + estimateTextTokens(call.arguments);
  }
  return tokens;
}

export function estimateTextTokens(text: string): number {
  return Math.ceil(text.length / 4);
}
