import type { Fleet } from "../../fleet.js";
import { outstandingOf, type Picker } from "../plugin.js";
import { topK } from "../top-k.js";
import { baselinePlacement, baselinePool } from "./baseline.js";

/** The baseline a least-connections balancer gives: the fewest outstanding requests per sequence, ties at random. */
export class LeastLoadedPicker implements Picker {
  readonly name = "least-loaded";

  constructor(
    private readonly fleet: Fleet,
    private readonly candidates: number,
    private readonly random: () => number,
  ) {}

  pick(query: Parameters<Picker["pick"]>[0], models: readonly string[]) {
    const { pool, model } = baselinePool(this.fleet, query, models);
    if (pool.length === 0) return { placements: [], reason: "no-eligible-worker" };
    const ranked = pool.map((member) => ({ member, outstanding: outstandingOf(member), tieBreak: this.random() }));
    const count = Math.min(this.candidates, pool.length);
    const best = topK(ranked, ranked.length, count, (a, b) => a.outstanding - b.outstanding || a.tieBreak - b.tieBreak);
    return { placements: best.map((entry) => baselinePlacement(entry.member, model, query)), reason: this.name };
  }
}
