import type { Scorer } from "../plugin.js";

/** KV headroom: the share of the worker's KV cache free, counting the picks it has not reported yet. */
export const kvScorer: Scorer = {
  name: "kv",
  score(candidates, count, _pick, scores) {
    for (let index = 0; index < count; index += 1) {
      const { member } = candidates[index]!;
      const { load } = member;
      scores[index] = load.kvTotalTokens > 0 ? 1 - Math.min(1, (load.kvUsedTokens + member.inFlightTokens) / load.kvTotalTokens) : 1;
    }
  },
  reason: () => "most-kv-headroom",
};
