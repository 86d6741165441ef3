import { ServerError, Status, type ServiceImplementation } from "nice-grpc";
import type { EmbeddingServiceDefinition, EmbedResponse } from "../../gen/infermesh/gateway/v1/embedding_service.js";
import type { AccessControl } from "../access/access-control.js";
import type { FlowDeps } from "../flow/deps.js";
import { runEmbedding } from "../flow/embed.js";
import { maxEmbeddingInputs } from "../../services/common/request-limits.js";
import { asServerError, observedCall, resolveEmbeddingCall } from "./resolve.js";

/** The public EmbeddingService: the same path, keys and limits as POST /v1/embeddings. */
export function createEmbeddingService(deps: FlowDeps, access: AccessControl): ServiceImplementation<typeof EmbeddingServiceDefinition> {
  return {
    embed: (request, context): Promise<EmbedResponse> =>
      observedCall(deps, context, async (observation) => {
        if (request.inputs.length === 0 || request.inputs.length > maxEmbeddingInputs) {
          throw new ServerError(Status.INVALID_ARGUMENT, `inputs must hold 1 to ${maxEmbeddingInputs} texts`);
        }
        const resolved = await resolveEmbeddingCall(access, context, request, observation);
        try {
          const result = await runEmbedding(deps, resolved, context.signal);
          return {
            model: resolved.model,
            embeddings: result.vectors.map((values) => ({ values: [...values] })),
            promptTokens: result.promptTokens,
          };
        } catch (error) {
          asServerError(error);
        }
      }),
  };
}
