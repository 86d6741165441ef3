import { ServerError, Status, type CallContext, type ServiceImplementation } from "nice-grpc";
import { randomUUID } from "node:crypto";
import { SamplingParams } from "../../gen/infermesh/common/v1/common.js";
import { ChatServiceDefinition, type ChatRequest, type ChatResponse, type StreamChatResponse } from "../../gen/infermesh/gateway/v1/chat_service.js";
import { GenerateRequest } from "../../gen/infermesh/worker/v1/worker_service.js";
import type { AccessControl } from "../access/access-control.js";
import { toApiError } from "../errors.js";
import { runGeneration, type FlowDeps, type GenerationFlowRequest } from "../generation-flow.js";
import { collectGeneration } from "../translate/choices.js";

const roles = new Set(["system", "developer", "user", "assistant", "tool"]);

/** Rethrows a flow failure as the matching gRPC status, with no internals. */
function asServerError(error: unknown): never {
  const apiError = toApiError(error);
  if (apiError.status === Status.CANCELLED) throw error;
  throw new ServerError(apiError.status, apiError.message);
}

/** The public ChatService: the same path, keys and profiles as POST /v1/chat/completions. */
export function createChatService(deps: FlowDeps, access: AccessControl): ServiceImplementation<typeof ChatServiceDefinition> {
  /** Validates a request and applies its key (metadata `authorization`), alias and profile. */
  async function flowRequest(request: ChatRequest, context: CallContext): Promise<GenerationFlowRequest> {
    if (request.model === "") throw new ServerError(Status.INVALID_ARGUMENT, "model must be set");
    if (request.messages.length === 0) throw new ServerError(Status.INVALID_ARGUMENT, "messages must not be empty");
    request.messages.forEach((message, index) => {
      if (!roles.has(message.role)) {
        throw new ServerError(Status.INVALID_ARGUMENT, `messages[${index}].role must be one of system, developer, user, assistant, tool`);
      }
    });
    if ((request.sampling?.n ?? 1) !== 1) throw new ServerError(Status.INVALID_ARGUMENT, "sampling.n above 1 is served by the HTTP API only");
    try {
      const identity = access.authenticate(context.metadata.get("authorization"));
      const resolved = await access.resolve(identity, request.model, request.profile || undefined, request.sampling?.maxTokens, request.user, context.signal);
      return {
        generate: GenerateRequest.create({
          requestId: randomUUID(),
          model: resolved.model,
          messages: request.messages,
          prompt: undefined,
          sampling: { ...(request.sampling ?? SamplingParams.create()), maxTokens: resolved.maxTokens },
          tools: request.tools,
          toolChoice: request.toolChoice,
          reasoningEffort: request.reasoningEffort,
        }),
        caller: resolved.caller,
        sessionId: request.user,
        alternativeModels: resolved.alternativeModels,
        operation: "chat",
      };
    } catch (error) {
      asServerError(error);
    }
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
      const events = runGeneration(deps, flow, context.signal);
      let model = flow.generate.model;
      let started = false;
      try {
        for (;;) {
          let next;
          try {
            next = await events.next();
          } catch (error) {
            if (!started) asServerError(error);
            const apiError = toApiError(error);
            yield { event: { $case: "error", value: { statusCode: apiError.status, message: apiError.message, retryable: false } } };
            return;
          }
          if (next.done) return;
          started = true;
          const event = next.value;
          if (event.$case === "started") model = event.value.model || model;
          else if (event.$case === "delta") {
            const { text, reasoningText, toolCalls } = event.value;
            yield {
              event: {
                $case: "delta",
                value: { id, content: text, reasoningContent: reasoningText, toolCalls: toolCalls.flatMap((call) => (call.call ? [call.call] : [])) },
              },
            };
          } else if (event.$case === "finished") {
            yield { event: { $case: "finished", value: { id, model, finishReason: event.value.finishReason, usage: event.value.usage } } };
          } else if (event.$case === "error") yield { event: { $case: "error", value: event.value } };
        }
      } finally {
        await events.return(undefined);
      }
    },
  };
}
