import { ServingState, type ModelInfo } from "../../gen/infermesh/common/v1/common.js";
import type { MeshClients } from "./clients.js";

/**
 * The models the fleet serves, from the router's worker list, cached for `ttlMs` so
 * that a request's model check costs no round trip.
 */
export class ModelCatalog {
  private cached: { atMs: number; models: ModelInfo[] } | undefined;
  /** Every model id some worker has served since this gateway started. */
  private readonly everServed = new Set<string>();

  constructor(
    private readonly clients: MeshClients,
    private readonly ttlMs: number,
  ) {}

  async list(signal?: AbortSignal): Promise<ModelInfo[]> {
    if (this.cached && performance.now() - this.cached.atMs < this.ttlMs) return this.cached.models;
    const { workers } = await this.clients.router.listWorkers({}, { signal });
    const byId = new Map<string, ModelInfo>();
    for (const worker of workers) {
      const state = worker.load?.state ?? worker.registration?.state;
      if (state !== ServingState.SERVING_STATE_SERVING) continue;
      for (const model of worker.registration?.models ?? []) if (!byId.has(model.id)) byId.set(model.id, model);
    }
    const models = [...byId.values()].sort((a, b) => a.id.localeCompare(b.id));
    for (const model of models) this.everServed.add(model.id);
    this.cached = { atMs: performance.now(), models };
    return models;
  }

  /** The model with this id; refreshes once on a miss so a new worker is seen at once. */
  async find(id: string, signal?: AbortSignal): Promise<ModelInfo | undefined> {
    const hit = (await this.list(signal)).find((model) => model.id === id);
    if (hit) return hit;
    this.cached = undefined;
    return (await this.list(signal)).find((model) => model.id === id);
  }

  /** Forgets the cached list: the next call asks the router (after an admin changed the models). */
  invalidate(): void {
    this.cached = undefined;
  }

  /** Whether a worker served this model before (so its absence now is temporary). */
  servedBefore(id: string): boolean {
    return this.everServed.has(id);
  }
}
