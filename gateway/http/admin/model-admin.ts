import type { FastifyInstance } from "fastify";
import { Status } from "nice-grpc";
import { z } from "zod";
import type { WorkerStatus } from "../../../gen/infermesh/router/v1/router_service.js";
import { ApiError, toApiError } from "../../errors.js";
import type { MeshClients } from "../../mesh/clients.js";
import type { ModelCatalog } from "../../mesh/models.js";
import { parseBody } from "../validation.js";

const loadBody = z.object({
  /** The GGUF, relative to (or inside) the workers' model directory. */
  model_path: z.string().min(1),
  /** Worker ids to load it on; every connected worker when absent. */
  workers: z.array(z.string().min(1)).min(1).optional(),
});
const unloadBody = z.object({ workers: z.array(z.string().min(1)).min(1).optional() });

/** How long the admin call waits for the router to see the change. */
const settleMs = 5_000;

/**
 * POST /admin/models/{id}/load and /unload: an admin loads a GGUF on workers (or drops
 * a model from them). Each worker loads or drains and frees it, then tells the router
 * on its Connect stream; the answer comes once the router routes accordingly.
 */
export function registerModelAdmin(app: FastifyInstance, clients: MeshClients, catalog: ModelCatalog): void {
  app.post<{ Params: { "*": string } }>("/admin/models/*", async (request) => {
    const match = /^(.+)\/(load|unload)$/.exec(request.params["*"]);
    if (!match) throw new ApiError(Status.NOT_FOUND, `Unknown request URL: POST ${request.url.split("?")[0]}`, { code: "unknown_url" });
    const [, id, action] = match as unknown as [string, string, "load" | "unload"];
    const body = request.body ?? {};
    const { workers } = await clients.router.listWorkers({});
    if (action === "load") {
      const { model_path: modelPath, workers: named } = parseBody(loadBody, body);
      const targets = pickWorkers(workers, named, () => true);
      const outcome = await onEach(targets, (address) => clients.workerAdmin(address).loadModel({ modelId: id, modelPath }));
      await routerSees(clients, (listed) => outcome.done.every((workerId) => serves(listed, workerId, id)));
      catalog.invalidate();
      return { id, object: "model", loaded: outcome.done, failed: outcome.failed };
    }
    const { workers: named } = parseBody(unloadBody, body);
    const targets = pickWorkers(workers, named, (worker) => serves([worker], worker.registration?.workerId ?? "", id));
    if (targets.length === 0)
      throw new ApiError(Status.NOT_FOUND, `No worker serves \`${id}\`.`, { param: "model", code: "model_not_found" });
    const outcome = await onEach(targets, (address) => clients.workerAdmin(address).unloadModel({ modelId: id }));
    await routerSees(clients, (listed) => outcome.done.every((workerId) => !serves(listed, workerId, id)));
    catalog.invalidate();
    return { id, object: "model", unloaded: outcome.done, failed: outcome.failed };
  });
}

/** The named workers (404 for one the router does not know), or every worker `fits`. */
function pickWorkers(workers: readonly WorkerStatus[], named: readonly string[] | undefined, fits: (worker: WorkerStatus) => boolean) {
  if (!named) return workers.filter(fits);
  return named.map((workerId) => {
    const worker = workers.find((candidate) => candidate.registration?.workerId === workerId);
    if (!worker)
      throw new ApiError(Status.NOT_FOUND, `No worker \`${workerId}\` is connected.`, { param: "workers", code: "worker_not_found" });
    return worker;
  });
}

/**
 * Runs `call` on every target at once. Succeeds when one worker did it, listing the
 * others' errors; when none did, fails with the first error.
 */
async function onEach(targets: readonly WorkerStatus[], call: (address: string) => Promise<unknown>) {
  if (targets.length === 0) throw new ApiError(Status.FAILED_PRECONDITION, "No worker is connected.", { code: "no_workers" });
  const results = await Promise.allSettled(targets.map((worker) => call(worker.registration!.address)));
  const done: string[] = [];
  const failed: { worker_id: string; error: { message: string; code: string } }[] = [];
  results.forEach((result, index) => {
    const workerId = targets[index]!.registration!.workerId;
    if (result.status === "fulfilled") done.push(workerId);
    else {
      const error = toApiError(result.reason);
      failed.push({ worker_id: workerId, error: { message: error.message, code: Status[error.status].toLowerCase() } });
    }
  });
  if (done.length === 0) throw toApiError(results.find((result) => result.status === "rejected")!.reason);
  return { done, failed };
}

function serves(workers: readonly WorkerStatus[], workerId: string, model: string): boolean {
  return workers.some(
    (worker) => worker.registration?.workerId === workerId && worker.registration.models.some((served) => served.id === model),
  );
}

/** Waits (a few seconds at most) until the router's fleet shows the change. */
async function routerSees(clients: MeshClients, seen: (workers: readonly WorkerStatus[]) => boolean): Promise<void> {
  const deadline = performance.now() + settleMs;
  while (performance.now() < deadline) {
    if (seen((await clients.router.listWorkers({})).workers)) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
