import { randomUUID } from "node:crypto";
import { ServerError, Status, type CallContext, type ServiceImplementation } from "nice-grpc";
import { SamplingParams, type ChatMessage } from "../../gen/infermesh/common/v1/common.js";
import {
  ChatServiceDefinition,
  type ChatRequest,
  type ChatResponse,
  type StreamChatResponse,
} from "../../gen/infermesh/gateway/v1/chat_service.js";
import { collectChat, runChat, type ChatFlowDeps } from "../chat-flow.js";
import { toApiError } from "../errors.js";

const roles = new Set(["system", "developer", "user", "assistant"]);

function validated(request: { model: string; messages: ChatMessage[]; sampling?: SamplingParams | undefined; user: string }) {
  if (request.model === "") throw new ServerError(Status.INVALID_ARGUMENT, "model must be set");
  if (request.messages.length === 0) throw new ServerError(Status.INVALID_ARGUMENT, "messages must not be empty");
  request.messages.forEach((message, index) => {
    if (!roles.has(message.role)) {
      throw new ServerError(Status.INVALID_ARGUMENT, `messages[${index}].role must be one of system, developer, user, assistant`);
    }
  });
  return {
    requestId: randomUUID(),
    model: request.model,
    messages: request.messages,
    sampling: request.sampling ?? SamplingParams.create(),
    user: request.user,
  };
}

/** Rethrows a chat-flow failure as the matching gRPC status, with no internals. */
function asServerError(error: unknown): never {
  const apiError = toApiError(error);
  if (apiError.status === Status.CANCELLED) throw error;
  throw new ServerError(apiError.status, apiError.message);
}

/** The public ChatService: the same path as POST /v1/chat/completions. */
export function createChatService(deps: ChatFlowDeps): ServiceImplementation<typeof ChatServiceDefinition> {
  return {
    async chat(request: ChatRequest, context: CallContext): Promise<ChatResponse> {
      const flowRequest = validated(request);
      const id = `chatcmpl-${flowRequest.requestId.replaceAll("-", "")}`;
      try {
        const answer = await collectChat(runChat(deps, flowRequest, context.signal), request.model);
        return { id, ...answer, createdUnixS: Math.floor(Date.now() / 1000) };
      } catch (error) {
        asServerError(error);
      }
    },

    async *streamChat(request, context: CallContext): AsyncIterable<StreamChatResponse> {
      const flowRequest = validated(request);
      const id = `chatcmpl-${flowRequest.requestId.replaceAll("-", "")}`;
      const events = runChat(deps, flowRequest, context.signal);
      let model = request.model;
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
          else if (event.$case === "delta") yield { event: { $case: "delta", value: { id, content: event.value.text } } };
          else if (event.$case === "finished") {
            yield { event: { $case: "finished", value: { id, model, finishReason: event.value.finishReason, usage: event.value.usage } } };
          } else if (event.$case === "error") yield { event: { $case: "error", value: event.value } };
        }
      } finally {
        await events.return(undefined);
      }
    },
  };
}
