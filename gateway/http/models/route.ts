import type { FastifyInstance } from "fastify";
import type { ModelCatalog } from "../../mesh/models.js";

/** GET /v1/models (and /api/v1/models): the models some serving worker has. */
export function registerModels(app: FastifyInstance, catalog: ModelCatalog, startedAtSeconds: number): void {
  const handler = async () => ({
    object: "list",
    data: (await catalog.list()).map((model) => ({
      id: model.id,
      object: "model",
      created: startedAtSeconds,
      owned_by: "infermesh",
      engine: model.engine,
      context_length: model.contextTokens,
      description: model.description,
    })),
  });
  app.get("/v1/models", handler);
  app.get("/api/v1/models", handler);
}
