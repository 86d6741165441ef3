import type { CallContext, ServiceImplementation } from "nice-grpc";
import { SamplingParams, type ToolCall } from "../../gen/infermesh/common/v1/common.js";
import type { ChatServiceDefinition, ChatRequest, ChatResponse, StreamChatResponse } from "../../gen/infermesh/gateway/v1/chat_service.js";
import type { AccessControl } from "../access/access-control.js";
import type { FlowDeps } from "../flow/deps.js";
import { runGeneration } from "../flow/generate.js";
import type { ResolvedGeneration } from "../flow/request.js";
import { collectGeneration } from "../translate/choices.js";
import { joinToolCall } from "../../services/common/tool-call-fragments.js";
import type { RequestObservation } from "../observability/request-observation.js";
import { asServerError, observedCall, observedStream, relayEvents, resolveGenerationCall } from "./resolve.js";

/** The public ChatService: the same path, keys and profiles as POST /v1/chat/completions. */
export function createChatService(deps: FlowDeps, access: AccessControl): ServiceImplementation<typeof ChatServiceDefinition> {
  /** Validates a request and applies its key (metadata `authorization`), alias and profile. */
  const resolve = (request: ChatRequest, context: CallContext, observation: RequestObservation) =>
    resolveGenerationCall(
      access,
      context,
      request,
      "chat",
      {
        messages: request.messages,
        prompt: undefined,
        sampling: request.sampling ?? SamplingParams.create(),
        tools: request.tools,
        toolChoice: request.toolChoice,
        reasoningEffort: request.reasoningEffort,
      },
      observation,
    );
  const idOf = (resolved: ResolvedGeneration) => `chatcmpl-${resolved.requestId.replaceAll("-", "")}`;

  return {
    chat: (request: ChatRequest, context: CallContext): Promise<ChatResponse> =>
      observedCall(deps, context, async (observation) => {
        const resolved = await resolve(request, context, observation);
        try {
          const answer = await collectGeneration(runGeneration(deps, resolved, context.signal), resolved.model, 1);
          const choice = answer.choices[0]!;
          return {
            id: idOf(resolved),
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
      }),

    streamChat: (request, context: CallContext): AsyncIterable<StreamChatResponse> =>
      observedStream(deps, context, async function* (observation) {
        const resolved = await resolve(request, context, observation);
        const id = idOf(resolved);
        let model = resolved.model;
        const calls: ToolCall[] = [];
        yield* relayEvents<StreamChatResponse>(
          runGeneration(deps, resolved, context.signal),
          (event) => {
            if (event.$case === "started") model = event.value.model || model;
            if (event.$case === "delta") {
              // This API sends each tool call whole: fragments are joined until the end.
              for (const fragment of event.value.toolCalls) joinToolCall(calls, fragment);
              const { text, reasoningText } = event.value;
              if (text === "" && reasoningText === "") return undefined;
              return { event: { $case: "delta", value: { id, content: text, reasoningContent: reasoningText, toolCalls: [] } } };
            }
            if (event.$case === "finished") {
              const finished: StreamChatResponse = {
                event: { $case: "finished", value: { id, model, finishReason: event.value.finishReason, usage: event.value.usage } },
              };
              if (calls.length === 0) return finished;
              return [{ event: { $case: "delta", value: { id, content: "", reasoningContent: "", toolCalls: calls } } }, finished];
            }
            return undefined;
          },
          (error) => ({ event: { $case: "error", value: error } }),
        );
      }),
  };
}
