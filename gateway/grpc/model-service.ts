import type { ServiceImplementation } from "nice-grpc";
import type { ModelServiceDefinition } from "../../gen/infermesh/gateway/v1/model_service.js";
import type { AccessControl } from "../access/access-control.js";
import type { ModelCatalog } from "../mesh/models.js";
import { asServerError } from "./resolve.js";

/** The public ModelService: the models some serving worker has; the same keys as GET /v1/models. */
export function createModelService(catalog: ModelCatalog, access: AccessControl): ServiceImplementation<typeof ModelServiceDefinition> {
  return {
    async listModels(_request, context) {
      try {
        access.authenticate(context.metadata.get("authorization"));
        return { models: await catalog.list(context.signal) };
      } catch (error) {
        asServerError(error);
      }
    },
  };
}
