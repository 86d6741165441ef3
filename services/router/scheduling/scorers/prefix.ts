import type { Scorer } from "../plugin.js";

/** The share of the prompt's leading blocks the worker's KV cache is thought to hold (while affinity counts for it). */
export const prefixScorer: Scorer = {
  name: "prefix",
  score(candidates, count, _pick, scores) {
    for (let index = 0; index < count; index += 1) scores[index] = candidates[index]!.cached;
  },
  reason: () => "prefix-affinity",
};
