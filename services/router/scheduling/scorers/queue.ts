import type { Scorer } from "../plugin.js";

/**
 * Outstanding requests per sequence, against the least loaded candidate's. The mean
 * is added to both sides, so a few requests apart matter on an idle fleet and little
 * on a busy one.
 */
export const queueScorer: Scorer = {
  name: "queue",
  score(candidates, count, _pick, scores) {
    let least = Infinity;
    let total = 0;
    for (let index = 0; index < count; index += 1) {
      const requests = candidates[index]!.requests;
      least = Math.min(least, requests);
      total += requests;
    }
    const floor = Math.max(1, total / count);
    for (let index = 0; index < count; index += 1) scores[index] = (floor + least) / (floor + candidates[index]!.requests);
  },
  reason: () => "least-loaded",
};
