import type { Fleet } from "../fleet.js";
import type { PrefixTable } from "../prefix-table.js";
import type { SessionTable } from "../session-table.js";
import { contextFitFilter } from "./filters/context-fit.js";
import { longPromptFilter } from "./filters/long-prompt.js";
import { minHealthFilter } from "./filters/min-health.js";
import { LeastLoadedPicker } from "./pickers/least-loaded.js";
import { RoundRobinPicker } from "./pickers/round-robin.js";
import { ScoringPicker } from "./pickers/scoring.js";
import { contextOf, type Picker, type Placement, type PickQuery, type PickResult } from "./plugin.js";
import { scorers } from "./scorers/index.js";

/**
 * How the router picks: `score` is filter → score → pick; `round-robin` and
 * `least-loaded` are the baselines a plain load balancer gives (hard filters only, no
 * affinity), kept so the fleet benchmark can compare against them on the same mesh.
 */
export const pickPolicies = ["score", "round-robin", "least-loaded"] as const;
export type PickPolicy = (typeof pickPolicies)[number];

export interface SchedulerConfig {
  readonly policy: PickPolicy;
  /** The scorers run, by name (scorers/index.ts), with their weights; the order is the order scores are reported in. */
  readonly scorers: Readonly<Record<string, number>>;
  /** The prefill scorer's floor (scorers/prefill.ts). */
  readonly prefillFloorTokens: number;
  /** Sticky until saturated: see ScoringSettings. */
  readonly affinitySaturation: number;
  readonly affinityImbalance: number;
  readonly affinitySlack: number;
  /** Workers less healthy than this are avoided while healthier ones exist (seeds: 0.7). */
  readonly minHealth: number;
  /** Prompts at least this long go to tensor-parallel groups when there are any, and prefer the largest context. */
  readonly longPromptTokens: number;
  /** Candidates returned, best first: the gateway tries down this list. */
  readonly candidates: number;
  /** Workers scored at most, besides the prefix holders and the session's worker (see ScoringPicker.takeLeastLoaded). */
  readonly scoreAtMost: number;
}

/** The router's scheduling: the configured picker, the model preference in front of it, and what a pick records. */
export class Scheduler {
  private picker: Picker;

  constructor(
    private readonly fleet: Fleet,
    private readonly prefixes: PrefixTable,
    private readonly sessions: SessionTable,
    private config: SchedulerConfig,
    private readonly random: () => number = Math.random,
  ) {
    this.picker = pickerOf(fleet, prefixes, sessions, config, random);
  }

  /** A new policy, scorer weights or filters (a reload): the next pick uses them. What the router learned (prefixes, sessions, load) stays. */
  reconfigure(config: SchedulerConfig): void {
    this.picker = pickerOf(this.fleet, this.prefixes, this.sessions, config, this.random);
    this.config = config;
  }

  /** Ranks the workers that may serve `query`; records nothing (see `commit`). */
  pick(query: PickQuery): PickResult {
    return this.picker.pick(query, this.preferenceOrder(query));
  }

  /** The request went to `placement`: count it there and remember its prefix and session. */
  commit(query: PickQuery, placement: Placement): void {
    const workerId = placement.member.registration.workerId;
    this.fleet.notePick(placement.member, query.requestId, query.kvNeedTokens, placement.prefillTokens);
    this.prefixes.record(workerId, query.prefixHashes);
    this.sessions.record(query.sessionId, workerId);
  }

  /** Models in the order they are preferred: as asked, or the largest context first for a long prompt. */
  private preferenceOrder(query: PickQuery): string[] {
    const models = [...new Set(query.models)];
    if (models.length > 1 && query.estimatedInputTokens >= this.config.longPromptTokens) {
      const largest = new Map(
        models.map((model) => [model, Math.max(0, ...this.fleet.eligible(model).map((member) => contextOf(member, model)))]),
      );
      models.sort((a, b) => largest.get(b)! - largest.get(a)!);
    }
    return models;
  }
}

/** Builds the picker `config` names, with its plugins. */
function pickerOf(fleet: Fleet, prefixes: PrefixTable, sessions: SessionTable, config: SchedulerConfig, random: () => number): Picker {
  switch (config.policy) {
    case "round-robin":
      return new RoundRobinPicker(fleet, config.candidates);
    case "least-loaded":
      return new LeastLoadedPicker(fleet, config.candidates, random);
    case "score":
      return new ScoringPicker(
        fleet,
        prefixes,
        sessions,
        {
          filters: [contextFitFilter, minHealthFilter(config.minHealth), longPromptFilter(config.longPromptTokens)],
          scorers: Object.entries(config.scorers).map(([name, weight]) => {
            const make = scorers[name];
            if (make === undefined) throw new Error(`unknown scorer "${name}"; known: ${Object.keys(scorers).join(", ")}`);
            return { scorer: make(config), weight };
          }),
          affinitySaturation: config.affinitySaturation,
          affinityImbalance: config.affinityImbalance,
          affinitySlack: config.affinitySlack,
          candidates: config.candidates,
          scoreAtMost: config.scoreAtMost,
          longPromptTokens: config.longPromptTokens,
        },
        random,
      );
  }
}
