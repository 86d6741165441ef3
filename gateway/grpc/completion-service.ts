import { randomUUID } from "node:crypto";
import type { CallContext, ServiceImplementation } from "nice-grpc";
import { ReasoningEffort, SamplingParams } from "../../gen/infermesh/common/v1/common.js";
import type {
  CompletionServiceDefinition,
  CompleteRequest,
  CompleteResponse,
  StreamCompleteResponse,
} from "../../gen/infermesh/gateway/v1/completion_service.js";
import { GenerateRequest } from "../../gen/infermesh/worker/v1/worker_service.js";
import type { AccessControl } from "../access/access-control.js";
import { flowRequestFor, runGeneration, type FlowDeps, type GenerationFlowRequest } from "../generation-flow.js";
import { collectGeneration } from "../translate/choices.js";
import type { GenerationValues } from "../validation/generation.js";
import { asServerError, relayEvents, resolveCall, validateCall } from "./resolve.js";

/** The public CompletionService: the same path, keys and profiles as POST /v1/completions. */
export function createCompletionService(deps: FlowDeps, access: AccessControl): ServiceImplementation<typeof CompletionServiceDefinition> {
  async function flowRequest(request: CompleteRequest, context: CallContext): Promise<GenerationFlowRequest> {
    const values: GenerationValues = {
      messages: [],
      prompt: request.prompt,
      sampling: request.sampling ?? SamplingParams.create(),
      tools: [],
      toolChoice: "",
      reasoningEffort: ReasoningEffort.REASONING_EFFORT_UNSPECIFIED,
    };
    validateCall(values);
    const resolved = await resolveCall(access, context, request, values.sampling.maxTokens);
    return flowRequestFor(
      resolved,
      request.user,
      "text_completion",
      GenerateRequest.create({
        ...values,
        requestId: randomUUID(),
        model: resolved.model,
        sampling: { ...values.sampling, maxTokens: resolved.maxTokens },
      }),
    );
  }
  const idOf = (flow: GenerationFlowRequest) => `cmpl-${flow.generate.requestId.replaceAll("-", "")}`;

  return {
    async complete(request, context): Promise<CompleteResponse> {
      const flow = await flowRequest(request, context);
      try {
        const answer = await collectGeneration(runGeneration(deps, flow, context.signal), flow.generate.model, 1);
        const choice = answer.choices[0]!;
        return { id: idOf(flow), model: answer.model, text: choice.text, finishReason: choice.finishReason, usage: answer.usage };
      } catch (error) {
        asServerError(error);
      }
    },

    async *streamComplete(request, context): AsyncIterable<StreamCompleteResponse> {
      const flow = await flowRequest(request, context);
      const id = idOf(flow);
      let model = flow.generate.model;
      yield* relayEvents<StreamCompleteResponse>(
        runGeneration(deps, flow, context.signal),
        (event) => {
          if (event.$case === "started") model = event.value.model || model;
          if (event.$case === "delta") return { event: { $case: "delta", value: { id, text: event.value.text } } };
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
