import type { FastifyInstance } from "fastify";
import { Status } from "nice-grpc";
import type { ModelInfo } from "../../../gen/infermesh/common/v1/common.js";
import { ApiError } from "../../errors.js";
import type { ModelCatalog } from "../../mesh/models.js";

/** GET /v1/models and /v1/models/{id} (and /api/v1/…): the models some serving worker has. */
export function registerModels(app: FastifyInstance, catalog: ModelCatalog, startedAtSeconds: number): void {
  const entry = (model: ModelInfo) => ({
    id: model.id,
    object: "model",
    created: startedAtSeconds,
    owned_by: "infermesh",
    engine: model.engine,
    context_length: model.contextTokens,
    description: model.description,
  });
  const list = async () => ({ object: "list", data: (await catalog.list()).map(entry) });
  const one = async (id: string) => {
    const model = await catalog.find(id);
    if (!model) {
      throw new ApiError(Status.NOT_FOUND, `The model '${id}' does not exist or is not served right now.`, {
        param: "model",
        code: "model_not_found",
      });
    }
    return entry(model);
  };
  for (const prefix of ["/v1", "/api/v1"]) {
    app.get(`${prefix}/models`, list);
    // Model ids may hold slashes ("openai/gpt-oss-20b"), so the id is the rest of the path.
    app.get<{ Params: { "*": string } }>(`${prefix}/models/*`, (request) => one(request.params["*"]));
  }
}
