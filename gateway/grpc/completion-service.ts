import type { CallContext, ServiceImplementation } from "nice-grpc";
import { ReasoningEffort, SamplingParams } from "../../gen/infermesh/common/v1/common.js";
import type {
  CompletionServiceDefinition,
  CompleteRequest,
  CompleteResponse,
  StreamCompleteResponse,
} from "../../gen/infermesh/gateway/v1/completion_service.js";
import type { AccessControl } from "../access/access-control.js";
import type { FlowDeps } from "../flow/deps.js";
import { runGeneration } from "../flow/generate.js";
import type { ResolvedGeneration } from "../flow/request.js";
import { collectGeneration } from "../translate/choices.js";
import type { RequestObservation } from "../observability/request-observation.js";
import { asServerError, observedCall, observedStream, relayEvents, resolveGenerationCall } from "./resolve.js";

/** The public CompletionService: the same path, keys and profiles as POST /v1/completions. */
export function createCompletionService(deps: FlowDeps, access: AccessControl): ServiceImplementation<typeof CompletionServiceDefinition> {
  const resolve = (request: CompleteRequest, context: CallContext, observation: RequestObservation) =>
    resolveGenerationCall(
      access,
      context,
      request,
      "text_completion",
      {
        messages: [],
        prompt: request.prompt,
        sampling: request.sampling ?? SamplingParams.create(),
        tools: [],
        toolChoice: "",
        reasoningEffort: ReasoningEffort.REASONING_EFFORT_UNSPECIFIED,
      },
      observation,
    );
  const idOf = (resolved: ResolvedGeneration) => `cmpl-${resolved.requestId.replaceAll("-", "")}`;

  return {
    complete: (request, context): Promise<CompleteResponse> =>
      observedCall(deps, context, async (observation) => {
        const resolved = await resolve(request, context, observation);
        try {
          const answer = await collectGeneration(runGeneration(deps, resolved, context.signal), resolved.model, 1);
          const choice = answer.choices[0]!;
          return { id: idOf(resolved), model: answer.model, text: choice.text, finishReason: choice.finishReason, usage: answer.usage };
        } catch (error) {
          asServerError(error);
        }
      }),

    streamComplete: (request, context): AsyncIterable<StreamCompleteResponse> =>
      observedStream(deps, context, async function* (observation) {
        const resolved = await resolve(request, context, observation);
        const id = idOf(resolved);
        let model = resolved.model;
        yield* relayEvents<StreamCompleteResponse>(
          runGeneration(deps, resolved, context.signal),
          (event) => {
            if (event.$case === "started") model = event.value.model || model;
            if (event.$case === "delta") return { event: { $case: "delta", value: { id, text: event.value.text } } };
            if (event.$case === "finished") {
              return {
                event: { $case: "finished", value: { id, model, finishReason: event.value.finishReason, usage: event.value.usage } },
              };
            }
            return undefined;
          },
          (error) => ({ event: { $case: "error", value: error } }),
        );
      }),
  };
}
