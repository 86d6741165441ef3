/**
 * The KV cache a request may take on a worker, in tokens: the one formula admission
 * (memory-aware admission), the router (a pick's load until the worker reports it) and
 * the worker (its reservation) all use. Each choice is its own sequence and holds the
 * prompt and its own output; `choices` 0 counts as 1, as proto3's default.
 */
export function kvNeedTokens(promptTokens: number, maxTokens: number, choices: number): number {
  return Math.max(1, choices) * (promptTokens + maxTokens);
}
