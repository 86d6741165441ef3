import { ServerError, Status, type CallContext, type ServiceImplementation } from "nice-grpc";
import { randomUUID } from "node:crypto";
import { SamplingParams } from "../../gen/infermesh/common/v1/common.js";
import { maxChatMessages } from "../../services/common/request-limits.js";
import { ChatServiceDefinition, type ChatRequest, type ChatResponse, type StreamChatResponse } from "../../gen/infermesh/gateway/v1/chat_service.js";
import { GenerateRequest } from "../../gen/infermesh/worker/v1/worker_service.js";
import type { AccessControl } from "../access/access-control.js";
import { flowRequestFor, runGeneration, type FlowDeps, type GenerationFlowRequest } from "../generation-flow.js";
import { collectGeneration } from "../translate/choices.js";
import { asServerError, relayEvents, resolveCall } from "./resolve.js";

const roles = new Set(["system", "developer", "user", "assistant", "tool"]);

/** The public ChatService: the same path, keys and profiles as POST /v1/chat/completions. */
export function createChatService(deps: FlowDeps, access: AccessControl): ServiceImplementation<typeof ChatServiceDefinition> {
  /** Validates a request and applies its key (metadata `authorization`), alias and profile. */
  async function flowRequest(request: ChatRequest, context: CallContext): Promise<GenerationFlowRequest> {
    if (request.messages.length === 0) throw new ServerError(Status.INVALID_ARGUMENT, "messages must not be empty");
    if (request.messages.length > maxChatMessages) throw new ServerError(Status.INVALID_ARGUMENT, `messages: at most ${maxChatMessages} messages are accepted`);
    request.messages.forEach((message, index) => {
      if (!roles.has(message.role)) {
        throw new ServerError(Status.INVALID_ARGUMENT, `messages[${index}].role must be one of system, developer, user, assistant, tool`);
      }
    });
    if ((request.sampling?.n ?? 1) !== 1) throw new ServerError(Status.INVALID_ARGUMENT, "sampling.n above 1 is served by the HTTP API only");
    const resolved = await resolveCall(access, context, request, request.sampling?.maxTokens);
    return flowRequestFor(
      resolved,
      request.user,
      "chat",
      GenerateRequest.create({
        requestId: randomUUID(),
        model: resolved.model,
        messages: request.messages,
        prompt: undefined,
        sampling: { ...(request.sampling ?? SamplingParams.create()), maxTokens: resolved.maxTokens },
        tools: request.tools,
        toolChoice: request.toolChoice,
        reasoningEffort: request.reasoningEffort,
      }),
    );
  }

  return {
    async chat(request: ChatRequest, context: CallContext): Promise<ChatResponse> {
      const flow = await flowRequest(request, context);
      try {
        const answer = await collectGeneration(runGeneration(deps, flow, context.signal), flow.generate.model, 1);
        const choice = answer.choices[0]!;
        return {
          id: `chatcmpl-${flow.generate.requestId.replaceAll("-", "")}`,
          model: answer.model,
          content: choice.text,
          finishReason: choice.finishReason,
          usage: answer.usage,
          createdUnixS: Math.floor(Date.now() / 1000),
          reasoningContent: choice.reasoning,
          toolCalls: choice.toolCalls,
        };
      } catch (error) {
        asServerError(error);
      }
    },

    async *streamChat(request, context: CallContext): AsyncIterable<StreamChatResponse> {
      const flow = await flowRequest(request, context);
      const id = `chatcmpl-${flow.generate.requestId.replaceAll("-", "")}`;
      let model = flow.generate.model;
      yield* relayEvents<StreamChatResponse>(
        runGeneration(deps, flow, context.signal),
        (event) => {
          if (event.$case === "started") model = event.value.model || model;
          if (event.$case === "delta") {
            const { text, reasoningText, toolCalls } = event.value;
            const calls = toolCalls.flatMap((call) => (call.call ? [call.call] : []));
            return { event: { $case: "delta", value: { id, content: text, reasoningContent: reasoningText, toolCalls: calls } } };
          }
          if (event.$case === "finished") {
            return { event: { $case: "finished", value: { id, model, finishReason: event.value.finishReason, usage: event.value.usage } } };
          }
          return undefined;
        },
        (error) => ({ event: { $case: "error", value: error } }),
      );
    },
  };
}
