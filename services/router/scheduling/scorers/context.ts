import { contextOf, type Scorer } from "../plugin.js";

/** The room the prompt leaves in the model's context window. */
export const contextScorer: Scorer = {
  name: "context",
  score(candidates, count, pick, scores) {
    const prompt = pick.query.estimatedInputTokens;
    for (let index = 0; index < count; index += 1) {
      const candidate = candidates[index]!;
      const window = contextOf(candidate.member, candidate.model);
      scores[index] = window > 0 ? 1 - Math.min(1, prompt / window) : 1;
    }
  },
  reason: () => "best-context-fit",
};
