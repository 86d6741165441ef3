import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { ServingState } from "../../../gen/infermesh/common/v1/common.js";
import type { WorkerStatus } from "../../../gen/infermesh/router/v1/router_service.js";
import type { MeshClients } from "../../mesh/clients.js";
import { parseBody } from "../validation.js";

const drainBody = z.object({ reason: z.string().max(200).optional() });

/**
 * GET /admin/workers lists the fleet as the router sees it; POST
 * /admin/workers/{id}/drain stops new work going to a worker at once and lets it finish
 * what it runs, for a rolling restart: drain, wait until `running_requests` is 0,
 * restart it, and it registers again.
 */
export function registerWorkerAdmin(app: FastifyInstance, clients: MeshClients): void {
  app.get("/admin/workers", async () => {
    const { workers } = await clients.router.listWorkers({});
    return { object: "list", data: workers.map(workerBody) };
  });

  app.post<{ Params: { id: string } }>("/admin/workers/:id/drain", async (request) => {
    const { reason } = parseBody(drainBody, request.body ?? {});
    const { worker } = await clients.router.drainWorker({ workerId: request.params.id, reason: reason ?? "" });
    return workerBody(worker!);
  });
}

function workerBody(worker: WorkerStatus) {
  const { registration, load } = worker;
  return {
    id: registration?.workerId ?? "",
    object: "worker",
    address: registration?.address ?? "",
    models: registration?.models.map((model) => model.id) ?? [],
    state: ServingState[load?.state ?? ServingState.SERVING_STATE_UNSPECIFIED].replace("SERVING_STATE_", "").toLowerCase(),
    draining: worker.draining,
    running_requests: load?.runningRequests ?? 0,
    waiting_requests: load?.waitingRequests ?? 0,
    kv_used_tokens: load?.kvUsedTokens ?? 0,
    kv_total_tokens: load?.kvTotalTokens ?? 0,
    pending_prefill_tokens: load?.pendingPrefillTokens ?? 0,
    report_age_ms: worker.reportAgeMs,
  };
}
