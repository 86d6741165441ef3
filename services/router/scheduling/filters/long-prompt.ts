import type { Filter } from "../plugin.js";

/** A prompt at least `longPromptTokens` long goes to tensor-parallel (multi-GPU) groups, when there are any. */
export function longPromptFilter(longPromptTokens: number): Filter {
  return {
    name: "long-prompt-tensor-parallel",
    keeps: (member, _model, _health, pick) =>
      pick.query.estimatedInputTokens < longPromptTokens || member.registration.tensorParallelSize > 1,
  };
}
