import type { Scorer } from "../plugin.js";
import { contextScorer } from "./context.js";
import { healthScorer } from "./health.js";
import { kvScorer } from "./kv.js";
import { prefillScorer } from "./prefill.js";
import { prefixScorer } from "./prefix.js";
import { queueScorer } from "./queue.js";
import { sessionScorer } from "./session.js";

/** What a scorer may be configured with. */
export interface ScorerSettings {
  /** The prefill scorer's floor (services/router/scheduling/scorers/prefill.ts). */
  readonly prefillFloorTokens: number;
}

/** Every scorer, by the name the `scorers` setting lists it under. */
export const scorers: Readonly<Record<string, (settings: ScorerSettings) => Scorer>> = {
  queue: () => queueScorer,
  kv: () => kvScorer,
  prefix: () => prefixScorer,
  session: () => sessionScorer,
  health: () => healthScorer,
  context: () => contextScorer,
  prefill: (settings) => prefillScorer(settings.prefillFloorTokens),
};

/** The scorers a router runs by default, with their weights. */
export const defaultScorerWeights: Readonly<Record<string, number>> = {
  queue: 2,
  kv: 1,
  prefix: 1,
  session: 2,
  health: 1,
  context: 0.5,
  prefill: 10,
};
