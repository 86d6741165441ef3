import type { Fleet, FleetMember } from "../../fleet.js";
import { outstandingOf, type Placement, type PickQuery } from "../plugin.js";

/**
 * The workers a plain load balancer chooses among: those of the first preferred model
 * that has any eligible, not excluded. Hard filters only, no affinity.
 */
export function baselinePool(fleet: Fleet, query: PickQuery, models: readonly string[]): { pool: FleetMember[]; model: string } {
  for (const model of models) {
    const pool = fleet.eligible(model).filter((member) => !query.excludedWorkerIds.has(member.registration.workerId));
    if (pool.length > 0) return { pool, model };
  }
  return { pool: [], model: "" };
}

/** A baseline's placement: only the queue score is filled in. */
export function baselinePlacement(member: FleetMember, model: string, query: PickQuery): Placement {
  const queue = 1 / (1 + outstandingOf(member));
  return { member, model, score: queue, scores: { queue }, prefillTokens: query.estimatedInputTokens };
}
