import type { Fleet, FleetMember } from "../../fleet.js";
import { quickselect } from "../../../common/quickselect.js";
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
  /** The filters, in order: an earlier one weighs more when a large fleet is bounded. */
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
  /** Workers scored at most, besides the prefix holders and the session's worker (see `bound`). */
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
  /** What failing each filter adds to a worker's bounding key: the first filter weighs most. */
  private readonly filterTiers: Float64Array;
  /** One column of scores per scorer, reused. */
  private columns: Float64Array[] = [];
  private readonly pool: Candidate[] = [];
  /** The workers that pass the hard filters, with the preference rank of their model and their outstanding requests. */
  private readonly eligible: FleetMember[] = [];
  private ranks = new Int32Array(0);
  private requestsAt = new Float64Array(0);
  private meanRequests = 0;
  /** Which pick last found each member (by fleet index) eligible, and where. */
  private epochOf = new Uint32Array(0);
  private slotOf = new Int32Array(0);
  private epoch = 0;
  private keys = new Float64Array(0);
  private selectScratch = new Float64Array(0);
  private taken = new Uint8Array(0);

  constructor(
    private readonly fleet: Fleet,
    private readonly prefixes: PrefixTable,
    private readonly sessions: SessionTable,
    private readonly settings: ScoringSettings,
    private readonly random: () => number,
  ) {
    this.weightSum = settings.scorers.reduce((sum, { weight }) => sum + weight, 0) || 1;
    this.filterTiers = Float64Array.from(settings.filters, (_, at) => 10 ** (6 + settings.filters.length - 1 - at));
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
   * prefix holders, the session's worker, and the `scoreAtMost` workers a filter-aware
   * load key ranks first (see `bound`). A worker outside those has no affinity and more
   * outstanding requests per sequence than each of them, so it could win only on KV
   * headroom, health or context fit, which weigh less than the queue; scoring it costs
   * more than that rare gain is worth at a thousand workers.
   */
  private candidatesOf(pick: PickState, models: readonly string[]): number {
    const { fleet } = this;
    const { query, now } = pick;
    // Only a pick among several models can meet a worker twice.
    const seen = models.length > 1 ? new Set<string>() : undefined;
    const excluded = query.excludedWorkerIds.size > 0 ? query.excludedWorkerIds : undefined;
    const eligible = this.eligible;
    let total = 0;
    for (const model of models) total += fleet.serving(model).length;
    if (this.ranks.length < total) {
      this.ranks = new Int32Array(total * 2);
      this.requestsAt = new Float64Array(total * 2);
    }
    if (this.epochOf.length < fleet.indexLimit) {
      const epochOf = new Uint32Array(fleet.indexLimit * 2);
      epochOf.set(this.epochOf);
      this.epochOf = epochOf;
      const slotOf = new Int32Array(fleet.indexLimit * 2);
      slotOf.set(this.slotOf);
      this.slotOf = slotOf;
    }
    const epoch = ++this.epoch;
    let count = 0;
    let requests = 0;
    for (let rank = 0; rank < models.length; rank += 1) {
      const members = fleet.serving(models[rank]!);
      // Start at a random member, so a bounded pick among equally idle workers does not always take the same ones.
      const offset = members.length > this.settings.scoreAtMost ? Math.floor(this.random() * members.length) : 0;
      for (let step = 0; step < members.length; step += 1) {
        const member = members[(offset + step) % members.length]!;
        if (!fleet.takesWork(member, now)) continue;
        const workerId = member.registration.workerId;
        if (excluded?.has(workerId) || seen?.has(workerId)) continue;
        seen?.add(workerId);
        eligible[count] = member;
        this.ranks[count] = rank;
        const outstanding = requestsOf(member);
        this.requestsAt[count] = outstanding;
        requests += outstanding;
        this.epochOf[member.index] = epoch;
        this.slotOf[member.index] = count;
        count += 1;
      }
    }
    eligible.length = count;
    this.meanRequests = count > 0 ? requests / count : 0;
    const pool = this.pool;
    let size = 0;
    const take = (index: number) => {
      const member = eligible[index]!;
      const rank = this.ranks[index]!;
      // biome-ignore lint/suspicious/noAssignInExpressions: a pick reuses the pool's slot objects instead of allocating
      const candidate = (pool[size] ??= {
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
      candidate.model = models[rank]!;
      candidate.rank = rank;
      candidate.tieBreak = this.random();
      candidate.health = fleet.health(member, now);
      size += 1;
    };
    if (count <= this.settings.scoreAtMost) for (let index = 0; index < count; index += 1) take(index);
    else this.bound(pick, models, take);
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

  /**
   * Takes the eligible workers worth scoring in a large fleet: every prefix holder, the
   * session's worker, and the `scoreAtMost` with the smallest key. The key orders as the
   * filters and the ranking do: a worker failing the first filter goes after every
   * worker passing it, then likewise for each next filter, then a saturated one, then a
   * less preferred model; within a tier, the fewer outstanding requests per sequence,
   * the sooner.
   */
  private bound(pick: PickState, models: readonly string[], take: (index: number) => void): void {
    const eligible = this.eligible;
    const count = eligible.length;
    if (this.keys.length < count) {
      this.keys = new Float64Array(count * 2);
      this.selectScratch = new Float64Array(count * 2);
      this.taken = new Uint8Array(count * 2);
    }
    const { filters } = this.settings;
    const tiers = this.filterTiers;
    const { fleet, ranks, requestsAt } = this;
    const { now } = pick;
    for (let index = 0; index < count; index += 1) {
      const member = eligible[index]!;
      const rank = ranks[index]!;
      const outstanding = requestsAt[index]! / Math.max(1, member.registration.maxSequences);
      let key = Math.min(outstanding, 99) + 100 * rank;
      if (outstanding >= 1) key += 1e4;
      const health = fleet.health(member, now);
      const model = models[rank]!;
      for (let at = 0; at < tiers.length; at += 1) if (!filters[at]!.keeps(member, model, health, pick)) key += tiers[at]!;
      this.keys[index] = key;
      this.selectScratch[index] = key;
    }
    const limit = this.settings.scoreAtMost;
    const threshold = quickselect(this.selectScratch, count, limit - 1);
    let below = 0;
    for (let index = 0; index < count; index += 1) if (this.keys[index]! < threshold) below += 1;
    let ties = limit - below;
    const taken = this.taken;
    for (let index = 0; index < count; index += 1) {
      const key = this.keys[index]!;
      const chosen = key < threshold || (key === threshold && ties-- > 0);
      taken[index] = chosen ? 1 : 0;
      if (chosen) take(index);
    }
    // Then the prefix holders and the session's worker the load key left out: a few, found by id.
    const takeWorker = (workerId: string) => {
      const member = this.fleet.member(workerId);
      if (member === undefined || this.epochOf[member.index] !== this.epoch) return;
      const slot = this.slotOf[member.index]!;
      if (eligible[slot] !== member || taken[slot] === 1) return;
      taken[slot] = 1;
      take(slot);
    };
    for (const workerId of pick.matched.keys()) takeWorker(workerId);
    if (pick.sessionWorker !== undefined) takeWorker(pick.sessionWorker);
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
