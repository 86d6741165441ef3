import {
  HarmonyChatWrapper,
  LlamaText,
  SpecialTokensText,
  type ChatHistoryItem,
  type ChatModelFunctionCall,
  type ChatModelFunctions,
  type ChatModelResponse,
  type ChatWrapper,
} from "node-llama-cpp";
import type { ChatMessage, Tool } from "../../../../gen/infermesh/common/v1/common.js";
import { EngineError } from "../engine.js";

/**
 * OpenAI-style messages as node-llama-cpp's chat history: system and developer turns
 * become system text, an assistant turn keeps its reasoning as a thought segment and
 * its tool calls as function calls whose results are the "tool" turns answering them.
 */
export function toChatHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  if (messages.length === 0) throw new EngineError("invalid_argument", "messages must not be empty");
  const toolResults = new Map<string, string>();
  for (const message of messages) {
    if (message.role === "tool") toolResults.set(message.toolCallId, message.content);
  }
  const history: ChatHistoryItem[] = [];
  messages.forEach((message, index) => {
    switch (message.role) {
      case "system":
      case "developer":
        history.push({ type: "system", text: message.content });
        return;
      case "user":
        history.push({ type: "user", text: message.content });
        return;
      case "assistant": {
        const response: ChatModelResponse["response"] = [];
        if (message.reasoningContent !== "") {
          response.push({ type: "segment", segmentType: "thought", text: message.reasoningContent, ended: true });
        }
        for (const call of message.toolCalls) {
          if (!toolResults.has(call.id)) {
            throw new EngineError("invalid_argument", `messages[${index}].tool_calls: no "tool" message answers the call "${call.id}"`);
          }
          response.push(functionCall(call.name, call.arguments, toolResults.get(call.id)!, index));
        }
        if (message.content !== "") response.push(message.content);
        history.push({ type: "model", response });
        return;
      }
      case "tool":
        // Folded into the assistant turn that made the call.
        if (!messages.some((other) => other.toolCalls.some((call) => call.id === message.toolCallId))) {
          throw new EngineError("invalid_argument", `messages[${index}].tool_call_id "${message.toolCallId}" answers no earlier tool call`);
        }
        return;
      default:
        throw new EngineError(
          "invalid_argument",
          `messages[${index}].role "${message.role}" is not system, developer, user, assistant or tool`,
        );
    }
  });
  return history;
}

function functionCall(name: string, argumentsJson: string, result: string, index: number): ChatModelFunctionCall {
  return {
    type: "functionCall",
    name,
    params: parseJson(argumentsJson, `messages[${index}].tool_calls.arguments`),
    result: parseResult(result),
  };
}

function parseJson(text: string, where: string): unknown {
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new EngineError("invalid_argument", `${where} is not valid JSON`);
  }
}

/** A tool's answer is shown to the model as JSON when it is JSON, else as text. */
function parseResult(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The tools the model may call under `toolChoice`, as node-llama-cpp functions; undefined for none. */
export function toFunctions(tools: readonly Tool[], toolChoice: string): ChatModelFunctions | undefined {
  if (tools.length === 0 || toolChoice === "none") return undefined;
  const chosen =
    toolChoice === "" || toolChoice === "auto" || toolChoice === "required" ? tools : tools.filter((tool) => tool.name === toolChoice);
  if (chosen.length === 0) throw new EngineError("invalid_argument", `tool_choice names "${toolChoice}", which is not among the tools`);
  const functions: Record<string, ChatModelFunctions[string]> = {};
  for (const tool of chosen) {
    functions[tool.name] = {
      description: tool.description || undefined,
      params: tool.parametersJson === "" ? undefined : (parseJson(tool.parametersJson, `tools["${tool.name}"].parameters`) as never),
    };
  }
  return functions;
}

/** Whether `toolChoice` obliges the model to call a tool ("required", or a tool's name). */
export function requiresToolCall(toolChoice: string): boolean {
  return toolChoice !== "" && toolChoice !== "auto" && toolChoice !== "none";
}

/**
 * `wrapper`, except that the answer opens straight into a function call, so the model
 * must call one of the functions offered (with a grammar for its arguments): what
 * `tool_choice: "required"` or a named tool means. node-llama-cpp enters function-call
 * mode when no prefix trigger is set and `noPrefixTrigger` says so; for harmony the
 * call goes on the commentary channel, as gpt-oss itself writes it.
 */
export function forcingFunctionCall(wrapper: ChatWrapper): ChatWrapper {
  const inject = wrapper instanceof HarmonyChatWrapper ? LlamaText(new SpecialTokensText("<|channel|>commentary")) : LlamaText([]);
  const forced = Object.create(wrapper) as ChatWrapper;
  forced.generateContextState = (options) => {
    const state = wrapper.generateContextState(options);
    if ("functionCall" in state || "ignoreStartText" in state) {
      return {
        contextText: state.contextText,
        stopGenerationTriggers: state.stopGenerationTriggers,
        functionCall: { initiallyEngaged: true, disengageInitiallyEngaged: [] },
      };
    }
    return {
      contextText: state.contextText,
      stopGenerationTriggers: state.stopGenerationTriggers,
      noPrefixTrigger: { type: "functionCall", inject },
      detectFunctionCalls: false,
    };
  };
  return forced;
}
