import type { Scorer } from "../plugin.js";

/** How far the router trusts the worker: report freshness, memory pressure, recent failures (Fleet.health). */
export const healthScorer: Scorer = {
  name: "health",
  score(candidates, count, _pick, scores) {
    for (let index = 0; index < count; index += 1) scores[index] = candidates[index]!.health;
  },
  reason: () => "healthiest",
};
