import { prefillWaitOf, type Scorer } from "../plugin.js";

/**
 * The prefill the request would wait behind and do there (the worker's queued prefill
 * plus the prompt its cache lacks), against the candidate where that is least.
 * `floorTokens` is added to both sides, so that a few hundred tokens either way, which
 * cost milliseconds, do not outweigh the rest.
 */
export function prefillScorer(floorTokens: number): Scorer {
  return {
    name: "prefill",
    score(candidates, count, _pick, scores) {
      let least = Infinity;
      for (let index = 0; index < count; index += 1) {
        const candidate = candidates[index]!;
        least = Math.min(least, prefillWaitOf(candidate.member) + candidate.prefill);
      }
      for (let index = 0; index < count; index += 1) {
        const candidate = candidates[index]!;
        scores[index] = (floorTokens + least) / (floorTokens + prefillWaitOf(candidate.member) + candidate.prefill);
      }
    },
    // Less to prefill because more of the prompt is cached there is prefix affinity at work.
    reason: (first, second) => (first.cached > second.cached ? "prefix-affinity" : "shortest-prefill"),
  };
}
