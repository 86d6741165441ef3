/**
 * The one validation of a generation request's values, for every public API: the HTTP
 * routes call it on the request they translated from OpenAI JSON, the gRPC services on
 * the message they received, so the same input gets the same error, with the same
 * OpenAI parameter name, whichever way it came. (The HTTP schemas check only JSON's
 * shape: types and required fields.)
 */
import { Status } from "nice-grpc";
import { ReasoningEffort, type ChatMessage, type SamplingParams, type Tool } from "../../gen/infermesh/common/v1/common.js";
import type { GenerateRequest } from "../../gen/infermesh/worker/v1/worker_service.js";
import { checkJsonSchema } from "../../services/common/json-schema.js";
import { maxChatMessages, maxChoices, maxStopChars, maxStopSequences, maxTools } from "../../services/common/request-limits.js";
import { ApiError } from "../errors.js";

/**
 * A generation request's values, as the worker will get them: the GenerateRequest
 * less its routing fields, with sampling as asked (max_tokens before a profile caps it).
 * A chat has messages and no prompt; a completion a prompt and no messages.
 */
export type GenerationValues = Pick<GenerateRequest, "messages" | "prompt" | "tools" | "toolChoice" | "reasoningEffort"> & {
  sampling: SamplingParams;
};

/** The largest max_tokens and top_k a request may name (and the proto's 32 bits can carry). */
const maxCount = 2_147_483_647;

const toolName = /^[a-zA-Z0-9_-]{1,64}$/;
const roles = new Set(["system", "developer", "user", "assistant", "tool"]);

/** A refusal naming `param`, the same text for HTTP (400) and gRPC (INVALID_ARGUMENT). */
export function invalid(param: string, problem: string): ApiError {
  return new ApiError(Status.INVALID_ARGUMENT, `Invalid value for '${param}': ${problem}`, { param, code: "invalid_value" });
}

/** Where the APIs differ: what they call a parameter, and whether a call carries one choice only. */
export interface ApiRules {
  /** The API's name for a chat completion parameter (the Responses API says max_output_tokens for max_tokens…). */
  readonly rename?: (param: string) => string;
  /** Why `n` must be 1, for an API whose responses carry one choice. */
  readonly oneChoice?: string;
}

/** An API's name for the chat completion parameter `param`. */
export const paramName = (rules: ApiRules, param: string) => rules.rename?.(param) ?? param;

/** Throws the first problem of `request`, as an ApiError naming the parameter as the request's API names it. */
export function validateGeneration(request: GenerationValues, rules: ApiRules = {}): void {
  try {
    checkGeneration(request, rules);
  } catch (error) {
    const param = error instanceof ApiError ? error.details.param : undefined;
    if (!(error instanceof ApiError) || param === undefined || paramName(rules, param) === param) throw error;
    throw invalid(paramName(rules, param), error.message.slice(`Invalid value for '${param}': `.length));
  }
}

function checkGeneration(request: GenerationValues, rules: ApiRules): void {
  validateSampling(request.sampling, rules);
  if (request.prompt !== undefined) {
    if (request.prompt === "") throw invalid("prompt", "must not be empty");
    if (request.messages.length > 0) throw invalid("messages", "a completion takes a prompt, not messages");
    if (request.tools.length > 0) throw invalid("tools", "tools need a chat, not a prompt");
  } else {
    validateMessages(request.messages);
  }
  validateTools(request.tools, request.toolChoice);
  if (!Object.values(ReasoningEffort).includes(request.reasoningEffort) || request.reasoningEffort === ReasoningEffort.UNRECOGNIZED) {
    throw invalid("reasoning_effort", "must be one of low, medium or high");
  }
}

const finite = (value: number) => Number.isFinite(value);

function inRange(param: string, value: number | undefined, low: number, high: number, { lowOpen = false, integer = false } = {}): void {
  if (value === undefined) return;
  const below = lowOpen ? value <= low : value < low;
  if (!finite(value) || below || value > high || (integer && !Number.isInteger(value))) {
    const lower = lowOpen ? `above ${low}` : `at least ${low}`;
    throw invalid(param, `must be ${integer ? "an integer " : ""}${lower} and at most ${high}`);
  }
}

function validateSampling(sampling: SamplingParams, rules: ApiRules): void {
  inRange("temperature", sampling.temperature, 0, 2);
  inRange("top_p", sampling.topP, 0, 1, { lowOpen: true });
  inRange("top_k", sampling.topK, 0, maxCount, { integer: true });
  inRange("min_p", sampling.minP, 0, 1);
  inRange("repetition_penalty", sampling.repetitionPenalty, 0, 10, { lowOpen: true });
  inRange("presence_penalty", sampling.presencePenalty, -2, 2);
  inRange("frequency_penalty", sampling.frequencyPenalty, -2, 2);
  inRange("max_tokens", sampling.maxTokens, 1, maxCount, { integer: true });
  inRange("n", sampling.n, 1, maxChoices, { integer: true });
  if (rules.oneChoice !== undefined && (sampling.n ?? 1) !== 1) throw invalid("n", rules.oneChoice);
  inRange("seed", sampling.seed, 0, 4_294_967_295, { integer: true });
  inRange("top_logprobs", sampling.topLogprobs, 0, 20, { integer: true });
  if (sampling.topLogprobs > 0 && !sampling.logprobs) throw invalid("top_logprobs", "needs logprobs set to true");
  if (sampling.stop.length > maxStopSequences) throw invalid("stop", `at most ${maxStopSequences} stop sequences`);
  for (const [index, stop] of sampling.stop.entries()) {
    if (stop === "" || stop.length > maxStopChars) throw invalid(`stop[${index}]`, `a stop sequence is 1 to ${maxStopChars} characters`);
  }
  const format = sampling.responseFormat?.format;
  if (format?.$case === "jsonSchema") {
    if (format.value.name === "") throw invalid("response_format.json_schema.name", "must not be empty");
    const problem = checkJsonSchema(format.value.schemaJson === "" ? "{}" : format.value.schemaJson);
    if (problem) throw invalid("response_format.json_schema.schema", problem);
  }
}

function validateMessages(messages: readonly ChatMessage[]): void {
  if (messages.length === 0) throw invalid("messages", "at least one message is required");
  if (messages.length > maxChatMessages) throw invalid("messages", `at most ${maxChatMessages} messages are accepted`);
  for (const [index, message] of messages.entries()) {
    const at = `messages[${index}]`;
    if (!roles.has(message.role)) throw invalid(`${at}.role`, "must be one of system, developer, user, assistant, tool");
    if (message.role === "tool" && message.toolCallId === "")
      throw invalid(`${at}.tool_call_id`, "a tool message needs the tool_call_id it answers");
    if (message.role !== "assistant" && message.toolCalls.length > 0)
      throw invalid(`${at}.tool_calls`, "only an assistant message calls tools");
    for (const [call, toolCall] of message.toolCalls.entries()) {
      if (toolCall.id === "") throw invalid(`${at}.tool_calls[${call}].id`, "must not be empty");
      if (!toolName.test(toolCall.name))
        throw invalid(`${at}.tool_calls[${call}].function.name`, "a function name is 1 to 64 letters, digits, underscores or dashes");
    }
  }
}

function validateTools(tools: readonly Tool[], toolChoice: string): void {
  if (tools.length > maxTools) throw invalid("tools", `at most ${maxTools} tools`);
  const names = new Set<string>();
  for (const [index, tool] of tools.entries()) {
    if (!toolName.test(tool.name))
      throw invalid(`tools[${index}].function.name`, "a function name is 1 to 64 letters, digits, underscores or dashes");
    if (names.has(tool.name)) throw invalid(`tools[${index}].function.name`, `'${tool.name}' is offered twice`);
    names.add(tool.name);
    if (tool.parametersJson !== "") {
      const problem = checkJsonSchema(tool.parametersJson);
      if (problem) throw invalid(`tools[${index}].function.parameters`, problem);
    }
  }
  if (toolChoice === "" || toolChoice === "none" || toolChoice === "auto") return;
  if (tools.length === 0) throw invalid("tool_choice", "tool_choice needs tools");
  if (toolChoice !== "required" && !names.has(toolChoice))
    throw invalid("tool_choice", `tool_choice names '${toolChoice}', which is not among the tools`);
}
