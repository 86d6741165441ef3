import type { Fleet } from "../../fleet.js";
import type { Picker } from "../plugin.js";
import { baselinePlacement, baselinePool } from "./baseline.js";

/** The baseline a plain load balancer gives: the next workers in turn, whatever their load or cache. */
export class RoundRobinPicker implements Picker {
  readonly name = "round-robin";
  private turn = 0;

  constructor(
    private readonly fleet: Fleet,
    private readonly candidates: number,
  ) {}

  pick(query: Parameters<Picker["pick"]>[0], models: readonly string[]) {
    const { pool, model } = baselinePool(this.fleet, query, models);
    if (pool.length === 0) return { placements: [], reason: "no-eligible-worker" };
    const start = this.turn++ % pool.length;
    const count = Math.min(this.candidates, pool.length);
    const placements = Array.from({ length: count }, (_, offset) => baselinePlacement(pool[(start + offset) % pool.length]!, model, query));
    return { placements, reason: this.name };
  }
}
