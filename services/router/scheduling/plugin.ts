/**
 * The router's scheduling framework, built the way the Gateway API Inference
 * Extension's endpoint picker is: filters narrow the fleet, each scorer gives every
 * candidate a score in [0,1], the weighted mean ranks them, and a picker takes the
 * best. Each plugin is one file (scorers/, filters/, pickers/); the scorers a router
 * runs, and their weights, are its `scorers` setting. The framework (scheduler.ts)
 * owns each pick's scratch state, so plugins and fleet members keep none.
 */
import type { Fleet, FleetMember } from "../fleet.js";

/** One request to place. */
export interface PickQuery {
  /** Its id: the worker's load report names it once it arrived, which ends its pick's in-flight count. */
  readonly requestId: string;
  /** The model asked for, then the ones that may serve instead (balanced profile). */
  readonly models: readonly string[];
  readonly estimatedInputTokens: number;
  /** The KV it may hold on the worker (kvNeedTokens), counted against it until the worker reports it. */
  readonly kvNeedTokens: number;
  readonly sessionId: string;
  readonly prefixHashes: readonly number[];
  readonly excludedWorkerIds: ReadonlySet<string>;
}

/** What one pick knows before it scores: the same for every candidate and every plugin. */
export interface PickState {
  readonly query: PickQuery;
  readonly fleet: Fleet;
  readonly now: number;
  /** Leading prompt blocks each prefix holder is thought to hold (only holders are listed). */
  readonly matched: ReadonlyMap<string, number>;
  /** Blocks of the prompt that could match at most. */
  readonly matchable: number;
  /** The worker this session's last turn went to. */
  readonly sessionWorker: string | undefined;
}

/**
 * A worker being scored for one pick, with what the framework worked out about it
 * once for all plugins. Objects are reused from pick to pick: a plugin reads them
 * during its call and keeps no reference.
 */
export interface Candidate {
  member: FleetMember;
  /** The model it would run (a balanced pick may offer several). */
  model: string;
  /** Position of that model in the preference order. */
  rank: number;
  health: number;
  /** Whether prefix and session affinity count for it (sticky until saturated). */
  sticky: boolean;
  /** Share of the prompt its cache is thought to hold (0 when not sticky). */
  cached: number;
  /** Prompt tokens it would compute. */
  prefill: number;
  /** Outstanding requests, scaled to the widest candidate's sequences. */
  requests: number;
  /** 1 when saturated (outstanding ≥ its sequences): it goes after every unsaturated one. */
  saturated: number;
  /** Weighted mean of its scores. */
  score: number;
  tieBreak: number;
  /** Its row in the pick's score table. */
  slot: number;
}

/**
 * A soft filter: candidates that fail it are dropped, unless that would drop all of
 * them. Filters run in order; in a fleet too large to score whole, a worker failing an
 * earlier filter ranks after one failing only a later one (see ScoringPicker.takeLeastLoaded).
 */
export interface Filter {
  readonly name: string;
  keeps(member: FleetMember, model: string, health: number, pick: PickState): boolean;
}

/** A scorer: one signal, as a score in [0,1] for each candidate (1 is best). */
export interface Scorer {
  /** The name its scores are reported under, and its weight's key in the `scorers` setting. */
  readonly name: string;
  /** Writes the score of `candidates[i]` to `scores[i]` for each of the first `count`. */
  score(candidates: readonly Candidate[], count: number, pick: PickState, scores: Float64Array): void;
  /** Why `first` won over `second` when this scorer's weighted margin decided it. */
  reason(first: Candidate, second: Candidate): string;
}

/** A worker the request may go to, with the model it would run. */
export interface Placement {
  readonly member: FleetMember;
  readonly model: string;
  /** Weighted mean of `scores`. */
  readonly score: number;
  readonly scores: Readonly<Record<string, number>>;
  /** Prompt tokens it is expected to compute there: what its cache is not thought to hold. */
  readonly prefillTokens: number;
}

export interface PickResult {
  /** Best first, at most `candidates` long; empty when no worker may take the request. */
  readonly placements: Placement[];
  /** Why the first was chosen, e.g. "prefix-affinity". */
  readonly reason: string;
}

/** A picker: how a pick turns the fleet into placements (the scheduler, or a baseline balancer). */
export interface Picker {
  readonly name: string;
  /** `models` are the query's, in the order they are preferred. */
  pick(query: PickQuery, models: readonly string[]): PickResult;
}

export { outstandingOf, requestsOf } from "../member-load.js";

/** Prompt tokens the worker is computing or has queued, with those of the picks its last report may not include. */
export function prefillWaitOf(member: FleetMember): number {
  return member.load.pendingPrefillTokens + member.inFlightPrefill;
}

/** The context window of `model` on `member`; 0 when unknown. */
export function contextOf(member: FleetMember, model: string): number {
  for (const served of member.registration.models) if (served.id === model) return served.contextTokens;
  return 0;
}
