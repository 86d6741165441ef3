import type { FleetMember } from "./fleet.js";
import { rankByLoad } from "./least-loaded.js";

/** A worker and the model it would run the request with. */
export interface ModelCandidate {
  readonly member: FleetMember;
  readonly model: string;
  readonly score: number;
}

/** A worker whose outstanding requests reach its sequences scores at most this. */
const saturatedScore = 0.5;

/**
 * Ranks the workers of several models that may serve one request (the balanced
 * profile). The preferred model is the first listed; for a prompt of at least
 * `longPromptTokens` it is the one with the largest context window. Workers of the
 * preferred model come first unless they are saturated, in which case an unsaturated
 * worker of another model goes ahead of them; within a model, least loaded first.
 */
export function rankAcrossModels(
  models: readonly string[],
  eligible: (model: string) => FleetMember[],
  estimatedInputTokens: number,
  longPromptTokens: number,
): ModelCandidate[] {
  const contextOf = (model: string, members: FleetMember[]) =>
    Math.max(0, ...members.flatMap((member) => member.registration.models.filter((served) => served.id === model).map((served) => served.contextTokens)));
  const perModel = models.map((model) => ({ model, members: eligible(model) }));
  const preference = perModel.map((entry) => entry.model);
  if (estimatedInputTokens >= longPromptTokens) {
    const contexts = new Map(perModel.map((entry) => [entry.model, contextOf(entry.model, entry.members)]));
    preference.sort((a, b) => contexts.get(b)! - contexts.get(a)!);
  }
  // A worker serving several of the models is listed once, under the one it prefers.
  const seen = new Set<string>();
  const candidates: (ModelCandidate & { rank: number })[] = [];
  for (const model of preference) {
    const members = perModel.find((entry) => entry.model === model)!.members;
    for (const { member, score } of rankByLoad(members)) {
      if (seen.has(member.registration.workerId)) continue;
      seen.add(member.registration.workerId);
      candidates.push({ member, model, score, rank: preference.indexOf(model) });
    }
  }
  const saturated = (candidate: ModelCandidate) => (candidate.score <= saturatedScore ? 1 : 0);
  return candidates
    .sort((a, b) => saturated(a) - saturated(b) || a.rank - b.rank || b.score - a.score)
    .map(({ member, model, score }) => ({ member, model, score }));
}
