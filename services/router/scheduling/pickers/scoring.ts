import type { Fleet, FleetMember } from "../../fleet.js";
import { LoadIndex } from "../../load-index.js";
import {
  type Candidate,
  type Filter,
  outstandingOf,
  type Picker,
  type Placement,
  type PickQuery,
  type PickResult,
  type PickState,
  requestsOf,
  type Scorer,
} from "../plugin.js";
import { topK } from "../top-k.js";
import type { PrefixTable } from "../../prefix-table.js";
import type { SessionTable } from "../../session-table.js";

/** How the scoring picker runs. */
export interface ScoringSettings {
  /** The filters, in order: in a large fleet, failing an earlier one weighs more (see `takeLeastLoaded`). */
  readonly filters: readonly Filter[];
  /** The scorers and their weights. */
  readonly scorers: readonly { readonly scorer: Scorer; readonly weight: number }[];
  /**
   * Sticky until saturated (llm-d's default): prefix and session affinity count only
   * while a worker's outstanding requests are below this fraction of its sequences.
   */
  readonly affinitySaturation: number;
  /** …and while they are at most this multiple of the eligible workers' mean, plus `affinitySlack`. */
  readonly affinityImbalance: number;
  readonly affinitySlack: number;
  /** Candidates returned, best first: the gateway tries down this list. */
  readonly candidates: number;
  /** Workers scored at most, besides the prefix holders and the session's worker (see `takeLeastLoaded`). */
  readonly scoreAtMost: number;
  /** A prompt this long that lands on a tensor-parallel group says so in the pick's reason. */
  readonly longPromptTokens: number;
}

/**
 * Filter → score → pick. Owns every pick's scratch state: the candidate objects and
 * the score table are reused from pick to pick, and a member's place among a pick's
 * eligible workers is kept here by the member's fleet index, so a pick allocates
 * little and neither plugins nor fleet members hold any of it.
 */
export class ScoringPicker implements Picker {
  readonly name = "score";
  private readonly weightSum: number;
  /** One column of scores per scorer, reused. */
  private columns: Float64Array[] = [];
  private readonly pool: Candidate[] = [];
  /** Candidates in `pool` so far in this pick, and the models it prefers in order. */
  private size = 0;
  private preference: readonly string[] = [];
  /** The mean outstanding requests of the eligible workers: what relative saturation compares against. */
  private meanRequests = 0;
  /** Numbers the picks; per member (by fleet index): the pick that last met it, found it eligible, took it. */
  private epoch = 0;
  private seenEpoch = new Uint32Array(0);
  private eligibleEpoch = new Uint8Array(0);
  private takenEpoch = new Uint32Array(0);
  /** A large fleet's best prefix holders (bestHolders' scratch). */
  private readonly holders: { workerId: string; depth: number; load: number }[] = [];
  /** Workers of a large fleet's walk that failed a filter, and the first filter they failed. */
  private readonly deferred: { member: FleetMember; rank: number; failed: number }[] = [];

  constructor(
    private readonly fleet: Fleet,
    private readonly prefixes: PrefixTable,
    private readonly sessions: SessionTable,
    private readonly settings: ScoringSettings,
    private readonly random: () => number,
  ) {
    this.weightSum = settings.scorers.reduce((sum, { weight }) => sum + weight, 0) || 1;
  }

  pick(query: PickQuery, models: readonly string[]): PickResult {
    const pick: PickState = {
      query,
      fleet: this.fleet,
      now: this.fleet.now(),
      matched: this.prefixes.match(query.prefixHashes),
      matchable: Math.min(query.prefixHashes.length, this.prefixes.maxMatchBlocks),
      sessionWorker: this.sessions.workerOf(query.sessionId),
    };
    const size = this.candidatesOf(pick, models);
    if (size === 0) return { placements: [], reason: "no-eligible-worker" };
    this.describe(pick, size);
    const { scorers } = this.settings;
    if (this.columns.length !== scorers.length || this.columns[0]!.length < size) {
      this.columns = scorers.map(() => new Float64Array(Math.max(size * 2, 64)));
    }
    for (let at = 0; at < scorers.length; at += 1) scorers[at]!.scorer.score(this.pool, size, pick, this.columns[at]!);
    for (let index = 0; index < size; index += 1) {
      const candidate = this.pool[index]!;
      let sum = 0;
      for (let at = 0; at < scorers.length; at += 1) sum += scorers[at]!.weight * this.columns[at]![index]!;
      candidate.score = sum / this.weightSum;
      candidate.slot = index;
    }
    const best = topK(this.pool, size, this.settings.candidates, compare);
    const placements = best.map((candidate) => ({
      member: candidate.member,
      model: candidate.model,
      score: candidate.score,
      scores: this.scoresAt(candidate.slot),
      prefillTokens: candidate.prefill,
    }));
    return { placements, reason: this.reason(query, best, placements, size) };
  }

  /**
   * What every plugin reads about a candidate, worked out once: whether affinity counts
   * for it (sticky until saturated), the share of the prompt it holds, the prefill it
   * would do, and its load scaled to the widest candidate's sequences.
   */
  private describe(pick: PickState, size: number): void {
    const pool = this.pool;
    let widest = 1;
    for (let index = 0; index < size; index += 1) widest = Math.max(widest, pool[index]!.member.registration.maxSequences);
    const { affinitySaturation, affinityImbalance, affinitySlack } = this.settings;
    const mostForAffinity = affinityImbalance * this.meanRequests + affinitySlack;
    for (let index = 0; index < size; index += 1) {
      const candidate = pool[index]!;
      const { member } = candidate;
      const outstanding = outstandingOf(member);
      candidate.sticky = outstanding < affinitySaturation && requestsOf(member) <= mostForAffinity;
      candidate.cached =
        candidate.sticky && pick.matched.size > 0 ? (pick.matched.get(member.registration.workerId) ?? 0) / pick.matchable : 0;
      candidate.prefill = Math.round(pick.query.estimatedInputTokens * (1 - candidate.cached));
      candidate.requests = outstanding * widest;
      candidate.saturated = candidate.requests >= widest ? 1 : 0;
    }
  }

  /**
   * Serving, fresh, not critical, not excluded (hard); then each filter, only if someone
   * is left. A worker serving several of the models is listed under the one it prefers.
   * Fills `this.pool` from the front, reusing its objects, and returns how many.
   *
   * A fleet larger than `scoreAtMost` is not scored whole: the candidates are the
   * prefix holders, the session's worker, and the `scoreAtMost` least loaded workers
   * that pass the filters (see `takeLeastLoaded`). A worker outside those has no
   * affinity and more outstanding requests per sequence than each of them, so it could
   * win only on KV headroom, health or context fit, which weigh less than the queue;
   * scoring it costs more than that rare gain is worth at a thousand workers.
   */
  private candidatesOf(pick: PickState, models: readonly string[]): number {
    this.reserve();
    this.epoch += 1;
    this.size = 0;
    this.preference = models;
    let total = 0;
    for (const model of models) total += this.fleet.serving(model).length;
    if (total <= this.settings.scoreAtMost) this.takeAll(pick, models);
    else this.takeLeastLoaded(pick, models);
    const pool = this.pool;
    let size = this.size;
    for (const filter of this.settings.filters) {
      // Keeps the candidates that pass, in place, unless none or all do.
      let kept = 0;
      for (let index = 0; index < size; index += 1) {
        const candidate = pool[index]!;
        if (filter.keeps(candidate.member, candidate.model, candidate.health, pick)) kept += 1;
      }
      if (kept === 0 || kept === size) continue;
      let to = 0;
      for (let index = 0; index < size; index += 1) {
        const candidate = pool[index]!;
        if (!filter.keeps(candidate.member, candidate.model, candidate.health, pick)) continue;
        pool[index] = pool[to]!;
        pool[to] = candidate;
        to += 1;
      }
      size = kept;
    }
    return size;
  }

  /** A small fleet: every eligible worker is a candidate. */
  private takeAll(pick: PickState, models: readonly string[]): void {
    let count = 0;
    let requests = 0;
    for (let rank = 0; rank < models.length; rank += 1) {
      for (const member of this.fleet.serving(models[rank]!)) {
        if (!this.eligible(member, pick)) continue;
        count += 1;
        requests += requestsOf(member);
        this.take(member, rank, pick);
      }
    }
    this.meanRequests = count > 0 ? requests / count : 0;
  }

  /**
   * A large fleet: the `scoreAtMost` least loaded eligible workers that pass every
   * filter, found in the fleet's load index from the least loaded up (unsaturated
   * workers of each model in preference order, then saturated ones), so a pick looks at
   * about as many workers as it scores, however large the fleet. Only when too few pass
   * the filters are failing ones taken, those failing a later filter before those
   * failing an earlier one. Then the prefix holders and the session's worker, by id.
   */
  private takeLeastLoaded(pick: PickState, models: readonly string[]): void {
    const { fleet, random } = this;
    const { filters, scoreAtMost } = this.settings;
    const deferred = this.deferred;
    deferred.length = 0;
    let total = 0;
    let members = 0;
    for (const model of models) {
      const mean = fleet.byLoad.meanRequests(model);
      total += mean.total;
      members += mean.members;
    }
    this.meanRequests = members > 0 ? total / members : 0;
    const visit = (rank: number) => (member: FleetMember) => {
      if (!this.eligible(member, pick)) return true;
      const health = fleet.health(member, pick.now);
      for (let at = 0; at < filters.length; at += 1) {
        if (!filters[at]!.keeps(member, models[rank]!, health, pick)) {
          deferred.push({ member, rank, failed: at });
          return true;
        }
      }
      this.take(member, rank, pick);
      return this.size < scoreAtMost;
    };
    const { saturatedFrom, buckets } = LoadIndex;
    for (const [from, to] of [
      [0, saturatedFrom],
      [saturatedFrom, buckets],
    ] as const) {
      for (let rank = 0; rank < models.length && this.size < scoreAtMost; rank += 1) {
        fleet.byLoad.walk(models[rank]!, from, to, random, visit(rank));
      }
    }
    if (this.size < scoreAtMost && deferred.length > 0) {
      // Stable: within a tier, still the least loaded first.
      deferred.sort((a, b) => b.failed - a.failed);
      for (const { member, rank } of deferred) {
        if (this.size >= scoreAtMost) break;
        this.take(member, rank, pick);
      }
    }
    for (const workerId of this.bestHolders(pick.matched, scoreAtMost / 2)) this.takeWorker(workerId, pick, models);
    if (pick.sessionWorker !== undefined) this.takeWorker(pick.sessionWorker, pick, models);
  }

  /**
   * The prefix holders a large fleet's pick scores: all of them up to `limit`, else the
   * `limit` holding the most of the prompt, the least loaded first among equals. A
   * popular prompt is held by more workers the larger the fleet (every pick adds its
   * blocks to the worker it chose), and those beyond the best few would lose to them
   * on the prefix and queue scores anyway; scoring them all made a pick's cost grow
   * with the fleet again.
   */
  private bestHolders(matched: ReadonlyMap<string, number>, limit: number): Iterable<string> {
    if (matched.size <= limit) return matched.keys();
    const best = this.holders;
    best.length = 0;
    for (const [workerId, depth] of matched) {
      const member = this.fleet.member(workerId);
      if (member === undefined) continue;
      const load = outstandingOf(member);
      // Kept sorted, best first: deeper, then less loaded.
      if (best.length === limit) {
        const last = best[limit - 1]!;
        if (depth < last.depth || (depth === last.depth && load >= last.load)) continue;
        best.pop();
      }
      let at = best.length;
      while (at > 0 && (best[at - 1]!.depth < depth || (best[at - 1]!.depth === depth && best[at - 1]!.load > load))) at -= 1;
      best.splice(at, 0, { workerId, depth, load });
    }
    return best.map((holder) => holder.workerId);
  }

  /** Takes the worker `workerId` if it is eligible, serves one of `models` and was not taken yet. */
  private takeWorker(workerId: string, pick: PickState, models: readonly string[]): void {
    const member = this.fleet.member(workerId);
    if (member === undefined || this.takenEpoch[member.index] === this.epoch) return;
    const rank = models.findIndex((model) => member.registration.models.some((served) => served.id === model));
    if (rank === -1) return;
    // Seen already (and found eligible, or not) by the walk, or now.
    if (this.seenEpoch[member.index] === this.epoch ? !this.eligibleEpoch[member.index] : !this.eligible(member, pick)) return;
    this.take(member, rank, pick);
  }

  /**
   * Whether `member` may take the request: serving, fresh, not critical, not excluded,
   * and not met already under a more preferred model. Remembered for the pick.
   */
  private eligible(member: FleetMember, pick: PickState): boolean {
    const { index } = member;
    if (this.seenEpoch[index] === this.epoch) return false;
    this.seenEpoch[index] = this.epoch;
    const excluded = pick.query.excludedWorkerIds;
    const eligible = this.fleet.takesWork(member, pick.now) && !(excluded.size > 0 && excluded.has(member.registration.workerId));
    this.eligibleEpoch[index] = eligible ? 1 : 0;
    return eligible;
  }

  /** Adds `member`, serving the model of preference `rank`, to the pick's candidates, reusing the pool's objects. */
  private take(member: FleetMember, rank: number, pick: PickState): void {
    this.takenEpoch[member.index] = this.epoch;
    // biome-ignore lint/suspicious/noAssignInExpressions: a pick reuses the pool's slot objects instead of allocating
    const candidate = (this.pool[this.size] ??= {
      member,
      model: "",
      rank,
      health: 0,
      sticky: false,
      cached: 0,
      prefill: 0,
      requests: 0,
      saturated: 0,
      score: 0,
      tieBreak: 0,
      slot: 0,
    });
    candidate.member = member;
    candidate.model = this.preference[rank]!;
    candidate.rank = rank;
    candidate.tieBreak = this.random();
    candidate.health = this.fleet.health(member, pick.now);
    this.size += 1;
  }

  /** Grows the per-member tables to the fleet's index range. */
  private reserve(): void {
    const limit = this.fleet.indexLimit;
    if (this.seenEpoch.length >= limit) return;
    const grown = (from: Uint32Array) => {
      const to = new Uint32Array(limit * 2);
      to.set(from);
      return to;
    };
    this.seenEpoch = grown(this.seenEpoch);
    this.takenEpoch = grown(this.takenEpoch);
    const eligibleEpoch = new Uint8Array(limit * 2);
    eligibleEpoch.set(this.eligibleEpoch);
    this.eligibleEpoch = eligibleEpoch;
  }

  private scoresAt(slot: number): Record<string, number> {
    const scores: Record<string, number> = {};
    this.settings.scorers.forEach(({ scorer }, at) => {
      scores[scorer.name] = this.columns[at]![slot]!;
    });
    return scores;
  }

  /** The scorer that put the first placement ahead of the second, by weighted margin. */
  private reason(query: PickQuery, best: readonly Candidate[], placements: readonly Placement[], poolSize: number): string {
    const [first, second] = placements;
    if (first!.model !== query.models[0]) return "balanced-model-choice";
    if (query.estimatedInputTokens >= this.settings.longPromptTokens && first!.member.registration.tensorParallelSize > 1)
      return "long-prompt-tensor-parallel";
    if (poolSize === 1 || second === undefined) return "only-eligible-worker";
    if (sameScore(first!.score, second.score)) return "tie-broken-at-random";
    let decided: Scorer | undefined;
    let margin = 0;
    this.settings.scorers.forEach(({ scorer, weight }) => {
      const gain = weight * (first!.scores[scorer.name]! - second.scores[scorer.name]!);
      if (gain > margin) {
        margin = gain;
        decided = scorer;
      }
    });
    return decided?.reason(best[0]!, best[1]!) ?? "tie-broken-at-random";
  }
}

/**
 * Scores closer than this count as equal. Without it a hair's difference (a report a
 * little older, a few KV tokens more) would order idle workers the same way every time
 * and send every cache miss to one of them.
 */
const scoreQuantum = 0.01;

const sameScore = (a: number, b: number) => Math.round(a / scoreQuantum) === Math.round(b / scoreQuantum);

/** Unsaturated first, then the preferred model, then the score (to `scoreQuantum`), then at random. */
function compare(a: Candidate, b: Candidate): number {
  return a.saturated - b.saturated || a.rank - b.rank || (sameScore(a.score, b.score) ? 0 : b.score - a.score) || a.tieBreak - b.tieBreak;
}
