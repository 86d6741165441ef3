import type { ServiceImplementation } from "nice-grpc";
import type { ModelServiceDefinition } from "../../gen/infermesh/gateway/v1/model_service.js";
import type { ModelCatalog } from "../mesh/models.js";

/** The public ModelService: the models some serving worker has. */
export function createModelService(catalog: ModelCatalog): ServiceImplementation<typeof ModelServiceDefinition> {
  return {
    async listModels(_request, context) {
      return { models: await catalog.list(context.signal) };
    },
  };
}
