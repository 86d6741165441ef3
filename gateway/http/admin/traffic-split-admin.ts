import type { FastifyInstance } from "fastify";
import { z } from "zod";
import type { TrafficSplit } from "../../../gen/infermesh/router/v1/router_service.js";
import type { MeshClients } from "../../mesh/clients.js";
import { parseBody } from "../validation.js";

const splitBody = z.object({
  /** The versions in a fixed order (keep it between updates), each with a relative weight. */
  targets: z.array(z.object({ model: z.string().min(1), weight: z.number().int().min(0).max(1_000_000) })).max(16),
});

/**
 * Canary and traffic splits, kept by the router: PUT /admin/splits/{model} with
 * `{"targets":[{"model":"gpt-oss-20b","weight":90},{"model":"gpt-oss-20b-ft","weight":10}]}`
 * sends that share of the model's sessions to each version (sticky per session); DELETE
 * removes it; GET /admin/splits lists them. The router meters what each version got in
 * infermesh_router_split_picks_total.
 */
export function registerTrafficSplitAdmin(app: FastifyInstance, clients: MeshClients): void {
  app.get("/admin/splits", async () => {
    const { splits } = await clients.router.listTrafficSplits({});
    return { object: "list", data: splits.map(splitJson) };
  });

  app.put<{ Params: { "*": string } }>("/admin/splits/*", async (request) => {
    const { targets } = parseBody(splitBody, request.body ?? {});
    const model = request.params["*"];
    await clients.router.setTrafficSplit({ split: { model, targets } });
    return splitJson({ model, targets });
  });

  app.delete<{ Params: { "*": string } }>("/admin/splits/*", async (request) => {
    const model = request.params["*"];
    await clients.router.setTrafficSplit({ split: { model, targets: [] } });
    return { model, object: "traffic_split", deleted: true };
  });
}

function splitJson(split: TrafficSplit) {
  return { model: split.model, object: "traffic_split", targets: split.targets.map(({ model, weight }) => ({ model, weight })) };
}
