import type { Scorer } from "../plugin.js";

/** 1 for the worker this session's last turn went to (while affinity counts for it). */
export const sessionScorer: Scorer = {
  name: "session",
  score(candidates, count, pick, scores) {
    for (let index = 0; index < count; index += 1) {
      const candidate = candidates[index]!;
      scores[index] = candidate.sticky && pick.sessionWorker === candidate.member.registration.workerId ? 1 : 0;
    }
  },
  reason: () => "session-affinity",
};
