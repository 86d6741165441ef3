import type { Fleet, FleetMember } from "./fleet.js";
import type { PrefixTable } from "./prefix-table.js";
import type { SessionTable } from "./session-table.js";
import { quickselect } from "../common/quickselect.js";

/**
 * Filter → score → pick, as the Gateway API Inference Extension's endpoint picker does
 * it: filters narrow the fleet, each scorer gives every survivor a score in [0,1], the
 * weighted mean ranks them, and ties are broken at random (never by fleet order, so
 * cache misses do not all land on the same worker).
 */

/** The scorers, by the name Pick reports their scores under. */
export const scorerNames = ["queue", "kv", "prefix", "session", "health", "context", "prefill"] as const;
export type ScorerName = (typeof scorerNames)[number];
export type ScorerWeights = Readonly<Record<ScorerName, number>>;

/**
 * How the picker ranks: `score` is filter → score → pick; `round-robin` and
 * `least-loaded` are the baselines a plain load balancer gives (hard filters only, no
 * affinity), kept so the fleet benchmark can compare against them on the same mesh.
 */
export const pickPolicies = ["score", "round-robin", "least-loaded"] as const;
export type PickPolicy = (typeof pickPolicies)[number];

export interface PickerConfig {
  readonly policy: PickPolicy;
  readonly weights: ScorerWeights;
  /**
   * Sticky until saturated (llm-d's default): prefix and session affinity count only
   * while a worker's outstanding requests are below this fraction of its sequences.
   * Past it a hot shared prefix spreads to the next worker instead of piling up.
   */
  readonly affinitySaturation: number;
  /**
   * Sticky until saturated, relative to the fleet: affinity also stops counting for a
   * worker whose outstanding requests exceed this multiple of the eligible workers'
   * mean plus `affinitySlack`. A GPU's sequence limit (1,024 in vLLM) is far above the
   * load where one worker holding a popular prompt starts to fall behind the rest, so
   * without this a tenant's shared system prompt piles its traffic onto one worker.
   */
  readonly affinityImbalance: number;
  readonly affinitySlack: number;
  /** Workers less healthy than this are avoided while healthier ones exist (seeds: 0.7). */
  readonly minHealth: number;
  /** Prompts at least this long go to tensor-parallel groups when there are any, and prefer the largest context. */
  readonly longPromptTokens: number;
  /** Candidates returned, best first: the gateway tries down this list. */
  readonly candidates: number;
  /**
   * The prefill scorer compares (this + tokens to prefill) between workers, so that a
   * few hundred tokens either way, which cost milliseconds, do not outweigh the rest.
   */
  readonly prefillFloorTokens: number;
  /**
   * Workers scored at most, besides the prefix holders and the session's worker; a
   * larger fleet is narrowed to its least loaded first (see `Picker.filter`).
   */
  readonly scoreAtMost: number;
}

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

/** A worker the request may go to, with the model it would run. */
export interface Placement {
  readonly member: FleetMember;
  readonly model: string;
  /** Weighted mean of `scores`. */
  readonly score: number;
  readonly scores: Readonly<Record<ScorerName, number>>;
  /** Prompt tokens it is expected to compute there: what its cache is not thought to hold. */
  readonly prefillTokens: number;
}

export interface PickResult {
  /** Best first, at most `candidates` long; empty when no worker may take the request. */
  readonly placements: Placement[];
  /** Why the first was chosen, e.g. "prefix-affinity". */
  readonly reason: string;
}

/** A candidate being scored; the scores live in `Picker.scratch` at `slot`. */
interface Scored {
  member: FleetMember;
  model: string;
  /** 1 when the worker is saturated (outstanding ≥ its sequences): it goes after every unsaturated one. */
  saturated: number;
  /** Position of its model in the preference order. */
  rank: number;
  score: number;
  tieBreak: number;
  slot: number;
  health: number;
  /** Whether prefix and session affinity count for it (sticky until saturated). */
  sticky: boolean;
  /** Share of the prompt its cache is thought to hold (0 when not sticky). */
  cached: number;
  /** Prompt tokens it would compute. */
  prefill: number;
  /** Outstanding requests, scaled to the widest candidate's sequences. */
  requests: number;
}

const reasons: Readonly<Record<ScorerName, string>> = {
  queue: "least-loaded",
  kv: "most-kv-headroom",
  prefix: "prefix-affinity",
  session: "session-affinity",
  health: "healthiest",
  context: "best-context-fit",
  prefill: "shortest-prefill",
};

export class Picker {
  private readonly weightSum: number;
  private scratch = new Float64Array(0);
  private turn = 0;
  /** Candidates of the pick in progress, reused from pick to pick so a pick allocates little. */
  private readonly candidates: Scored[] = [];
  /** The workers that pass the hard filters, with the preference rank of their model; reused likewise. */
  private readonly eligible: FleetMember[] = [];
  private ranks = new Int32Array(0);
  /** Their mean outstanding requests: what relative saturation compares against. */
  private meanRequests = 0;
  private keys = new Float64Array(0);
  private selectScratch = new Float64Array(0);
  /** The eligible members' outstanding requests (`requestsOf`), and which of them a bounded pick took. */
  private requestsAt = new Float64Array(0);
  private taken = new Uint8Array(0);
  /** Numbers the picks, for `FleetMember.pickEpoch`. */
  private epoch = 0;

  constructor(
    private readonly fleet: Fleet,
    private readonly prefixes: PrefixTable,
    private readonly sessions: SessionTable,
    private readonly config: PickerConfig,
    private readonly random: () => number = Math.random,
  ) {
    this.weightSum = scorerNames.reduce((sum, name) => sum + config.weights[name], 0) || 1;
  }

  /** Ranks the workers that may serve `query`; records nothing (see `commit`). */
  pick(query: PickQuery): PickResult {
    const now = this.fleet.now();
    const preference = this.preferenceOrder(query);
    if (this.config.policy !== "score") return this.pickBaseline(query, preference);
    const affinityWorker = this.sessions.workerOf(query.sessionId);
    const matchable = Math.min(query.prefixHashes.length, this.prefixes.maxMatchBlocks);
    const matched = this.prefixes.match(query.prefixHashes);
    const size = this.filter(query, preference, now, matched, affinityWorker);
    if (size === 0) return { placements: [], reason: "no-eligible-worker" };
    const pool = this.candidates;
    const stride = scorerNames.length;
    if (this.scratch.length < size * stride) this.scratch = new Float64Array(size * stride * 2);
    const { weights } = this.config;
    const mostForAffinity = this.config.affinityImbalance * this.meanRequests + this.config.affinitySlack;
    // First pass: what each candidate would cost, and the least of each cost.
    let widest = 1;
    for (let index = 0; index < size; index += 1) widest = Math.max(widest, pool[index]!.member.registration.maxSequences);
    let leastRequests = Infinity;
    let totalRequests = 0;
    let leastPrefill = Infinity;
    for (let index = 0; index < size; index += 1) {
      const candidate = pool[index]!;
      const { member } = candidate;
      const outstanding = outstandingOf(member);
      candidate.sticky = outstanding < this.config.affinitySaturation && requestsOf(member) <= mostForAffinity;
      candidate.cached = candidate.sticky && matched.size > 0 ? (matched.get(member.registration.workerId) ?? 0) / matchable : 0;
      candidate.prefill = Math.round(query.estimatedInputTokens * (1 - candidate.cached));
      candidate.requests = outstanding * widest;
      leastRequests = Math.min(leastRequests, candidate.requests);
      totalRequests += candidate.requests;
      leastPrefill = Math.min(leastPrefill, prefillWaitOf(member) + candidate.prefill);
    }
    const floor = this.config.prefillFloorTokens;
    // Load counts against the least loaded relative to the candidates' mean: a few requests apart matter on an idle fleet, not on a busy one.
    const requestsFloor = Math.max(1, totalRequests / size);
    for (let index = 0; index < size; index += 1) {
      const candidate = pool[index]!;
      const { member } = candidate;
      const load = member.load;
      const contextTokens = contextOf(member, candidate.model);
      const base = index * stride;
      const s = this.scratch;
      s[base] = (requestsFloor + leastRequests) / (requestsFloor + candidate.requests);
      s[base + 1] = load.kvTotalTokens > 0 ? 1 - Math.min(1, (load.kvUsedTokens + member.inFlightTokens) / load.kvTotalTokens) : 1;
      s[base + 2] = candidate.cached;
      s[base + 3] = candidate.sticky && affinityWorker === member.registration.workerId ? 1 : 0;
      s[base + 4] = candidate.health;
      s[base + 5] = contextTokens > 0 ? 1 - Math.min(1, query.estimatedInputTokens / contextTokens) : 1;
      s[base + 6] = (floor + leastPrefill) / (floor + prefillWaitOf(member) + candidate.prefill);
      candidate.score =
        (weights.queue * s[base]! +
          weights.kv * s[base + 1]! +
          weights.prefix * s[base + 2]! +
          weights.session * s[base + 3]! +
          weights.health * s[base + 4]! +
          weights.context * s[base + 5]! +
          weights.prefill * s[base + 6]!) /
        this.weightSum;
      candidate.saturated = candidate.requests >= widest ? 1 : 0;
      candidate.slot = index;
    }
    const best = topK(pool, size, this.config.candidates, compare);
    const placements = best.map((candidate) => ({
      member: candidate.member,
      model: candidate.model,
      score: candidate.score,
      scores: this.scoresAt(candidate.slot),
      prefillTokens: candidate.prefill,
    }));
    return { placements, reason: this.reason(query, placements, size) };
  }

  /** The request went to `placement`: count it there and remember its prefix and session. */
  commit(query: PickQuery, placement: Placement): void {
    const workerId = placement.member.registration.workerId;
    this.fleet.notePick(placement.member, query.requestId, query.kvNeedTokens, placement.prefillTokens);
    this.prefixes.record(workerId, query.prefixHashes);
    this.sessions.record(query.sessionId, workerId);
  }

  /**
   * A plain load balancer's choice among the workers of the first model that has any:
   * the next ones in turn, or the fewest outstanding requests per sequence (ties at
   * random). Only the queue score is filled in.
   */
  private pickBaseline(query: PickQuery, preference: readonly string[]): PickResult {
    let pool: FleetMember[] = [];
    let model = "";
    for (const candidate of preference) {
      pool = this.fleet.eligible(candidate).filter((member) => !query.excludedWorkerIds.has(member.registration.workerId));
      model = candidate;
      if (pool.length > 0) break;
    }
    if (pool.length === 0) return { placements: [], reason: "no-eligible-worker" };
    const placed = (member: FleetMember): Placement => {
      const queue = 1 / (1 + outstandingOf(member));
      const scores = { queue, kv: 0, prefix: 0, session: 0, health: 0, context: 0, prefill: 0 };
      return { member, model, score: queue, scores, prefillTokens: query.estimatedInputTokens };
    };
    const count = Math.min(this.config.candidates, pool.length);
    if (this.config.policy === "round-robin") {
      const start = this.turn++ % pool.length;
      const placements = Array.from({ length: count }, (_, offset) => placed(pool[(start + offset) % pool.length]!));
      return { placements, reason: "round-robin" };
    }
    const ranked = pool.map((member) => ({ member, outstanding: outstandingOf(member), tieBreak: this.random() }));
    const best = topK(ranked, ranked.length, count, (a, b) => a.outstanding - b.outstanding || a.tieBreak - b.tieBreak);
    return { placements: best.map((entry) => placed(entry.member)), reason: "least-loaded" };
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

  /**
   * Serving, fresh, not critical, not excluded (hard); then, each only if someone is
   * left: prompt fits the context, healthy enough, a tensor-parallel group for a long
   * prompt. A worker serving several of the models is listed under the one it prefers.
   * Fills `this.candidates` from the front, reusing its objects, and returns how many.
   *
   * A fleet larger than `scoreAtMost` is not scored whole: the candidates are the
   * prefix holders, the session's worker, and the `scoreAtMost` workers a filter-aware
   * load key ranks first (see `bound`). A worker outside those has no affinity and more
   * outstanding requests per sequence than each of them, so it could win only on KV
   * headroom, health or context fit, which weigh less than the queue; scoring it costs
   * more than that rare gain is worth at a thousand workers.
   */
  private filter(
    query: PickQuery,
    preference: readonly string[],
    now: number,
    matched: ReadonlyMap<string, number>,
    affinityWorker: string | undefined,
  ): number {
    // Only a pick among several models can meet a worker twice.
    const seen = preference.length > 1 ? new Set<string>() : undefined;
    const excluded = query.excludedWorkerIds.size > 0 ? query.excludedWorkerIds : undefined;
    const eligible = this.eligible;
    let total = 0;
    for (const model of preference) total += this.fleet.serving(model).length;
    if (this.ranks.length < total) {
      this.ranks = new Int32Array(total * 2);
      this.requestsAt = new Float64Array(total * 2);
    }
    const epoch = ++this.epoch;
    let count = 0;
    let requests = 0;
    for (let rank = 0; rank < preference.length; rank += 1) {
      const members = this.fleet.serving(preference[rank]!);
      // Start at a random member, so a bounded pick among equally idle workers does not always take the same ones.
      const offset = members.length > this.config.scoreAtMost ? Math.floor(this.random() * members.length) : 0;
      for (let step = 0; step < members.length; step += 1) {
        const member = members[(offset + step) % members.length]!;
        if (!this.fleet.takesWork(member, now)) continue;
        const workerId = member.registration.workerId;
        if (excluded?.has(workerId) || seen?.has(workerId)) continue;
        seen?.add(workerId);
        eligible[count] = member;
        this.ranks[count] = rank;
        const outstanding = requestsOf(member);
        this.requestsAt[count] = outstanding;
        requests += outstanding;
        member.pickEpoch = epoch;
        member.pickSlot = count;
        count += 1;
      }
    }
    eligible.length = count;
    this.meanRequests = count > 0 ? requests / count : 0;
    const pool = this.candidates;
    let size = 0;
    const take = (index: number) => {
      const member = eligible[index]!;
      const rank = this.ranks[index]!;
      const model = preference[rank]!;
      // biome-ignore lint/suspicious/noAssignInExpressions: a pick reuses the pool's slot objects instead of allocating
      const candidate = (pool[size] ??= {
        member,
        model,
        saturated: 0,
        rank,
        score: 0,
        tieBreak: 0,
        slot: 0,
        health: 0,
        sticky: false,
        cached: 0,
        prefill: 0,
        requests: 0,
      });
      candidate.member = member;
      candidate.model = model;
      candidate.rank = rank;
      candidate.tieBreak = this.random();
      candidate.health = this.fleet.health(member, now);
      size += 1;
    };
    if (count <= this.config.scoreAtMost) for (let index = 0; index < count; index += 1) take(index);
    else this.bound(query, preference, now, matched, affinityWorker, take);
    // Keeps the candidates that pass, in place, unless none or all do.
    const narrow = (keep: (candidate: Scored) => boolean) => {
      let kept = 0;
      for (let index = 0; index < size; index += 1) if (keep(pool[index]!)) kept += 1;
      if (kept === 0 || kept === size) return;
      let to = 0;
      for (let index = 0; index < size; index += 1) {
        const candidate = pool[index]!;
        if (!keep(candidate)) continue;
        pool[index] = pool[to]!;
        pool[to] = candidate;
        to += 1;
      }
      size = kept;
    };
    narrow((candidate) => fitsContext(candidate.member, candidate.model, query));
    narrow((candidate) => candidate.health >= this.config.minHealth);
    if (query.estimatedInputTokens >= this.config.longPromptTokens)
      narrow((candidate) => candidate.member.registration.tensorParallelSize > 1);
    return size;
  }

  /**
   * Takes the eligible workers worth scoring in a large fleet: every prefix holder, the
   * session's worker, and the `scoreAtMost` with the smallest key. The key orders as the
   * soft filters and the ranking do: a worker the prompt does not fit, then an unhealthy
   * one, then (for a long prompt) one that is not a tensor-parallel group, then a
   * saturated one, then a less preferred model, go after every other; within a tier the
   * fewer outstanding requests per sequence, the sooner.
   */
  private bound(
    query: PickQuery,
    preference: readonly string[],
    now: number,
    matched: ReadonlyMap<string, number>,
    affinityWorker: string | undefined,
    take: (index: number) => void,
  ): void {
    const eligible = this.eligible;
    const count = eligible.length;
    if (this.keys.length < count) {
      this.keys = new Float64Array(count * 2);
      this.selectScratch = new Float64Array(count * 2);
      this.taken = new Uint8Array(count * 2);
    }
    const long = query.estimatedInputTokens >= this.config.longPromptTokens;
    for (let index = 0; index < count; index += 1) {
      const member = eligible[index]!;
      const outstanding = this.requestsAt[index]! / Math.max(1, member.registration.maxSequences);
      let key = Math.min(outstanding, 99) + 100 * this.ranks[index]!;
      if (outstanding >= 1) key += 1e4;
      if (long && member.registration.tensorParallelSize <= 1) key += 1e6;
      if (this.fleet.health(member, now) < this.config.minHealth) key += 1e7;
      if (!fitsContext(member, preference[this.ranks[index]!]!, query)) key += 1e8;
      this.keys[index] = key;
      this.selectScratch[index] = key;
    }
    const limit = this.config.scoreAtMost;
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
      if (member === undefined || member.pickEpoch !== this.epoch || eligible[member.pickSlot] !== member || taken[member.pickSlot] === 1)
        return;
      taken[member.pickSlot] = 1;
      take(member.pickSlot);
    };
    for (const workerId of matched.keys()) takeWorker(workerId);
    if (affinityWorker !== undefined) takeWorker(affinityWorker);
  }

  private scoresAt(slot: number): Record<ScorerName, number> {
    const scores = {} as Record<ScorerName, number>;
    scorerNames.forEach((name, offset) => {
      scores[name] = this.scratch[slot * scorerNames.length + offset]!;
    });
    return scores;
  }

  /** The scorer that put the first placement ahead of the second, by weighted margin. */
  private reason(query: PickQuery, placements: readonly Placement[], poolSize: number): string {
    const [first, second] = placements;
    if (first!.model !== query.models[0]) return "balanced-model-choice";
    if (query.estimatedInputTokens >= this.config.longPromptTokens && first!.member.registration.tensorParallelSize > 1)
      return "long-prompt-tensor-parallel";
    if (poolSize === 1 || second === undefined) return "only-eligible-worker";
    if (sameScore(first!.score, second.score)) return "tie-broken-at-random";
    let best: ScorerName | undefined;
    let margin = 0;
    for (const name of scorerNames) {
      const gain = this.config.weights[name] * (first!.scores[name] - second.scores[name]);
      if (gain > margin) {
        margin = gain;
        best = name;
      }
    }
    if (best === undefined) return "tie-broken-at-random";
    // Less to prefill because more of the prompt is cached there is prefix affinity at work.
    if (best === "prefill" && first!.scores.prefix > second.scores.prefix) return reasons.prefix;
    return reasons[best];
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
function compare(a: Scored, b: Scored): number {
  return a.saturated - b.saturated || a.rank - b.rank || (sameScore(a.score, b.score) ? 0 : b.score - a.score) || a.tieBreak - b.tieBreak;
}

/** The `k` smallest of the first `count` items by `order`, sorted; one pass, no full sort of a large fleet. */
function topK<T>(items: readonly T[], count: number, k: number, order: (a: T, b: T) => number): T[] {
  const best: T[] = [];
  for (let index = 0; index < count; index += 1) {
    const item = items[index]!;
    if (best.length === k && order(item, best[k - 1]!) >= 0) continue;
    let at = best.length < k ? best.length : k - 1;
    if (best.length < k) best.push(item);
    while (at > 0 && order(item, best[at - 1]!) < 0) {
      best[at] = best[at - 1]!;
      at -= 1;
    }
    best[at] = item;
  }
  return best;
}

/** Requests running, waiting and picked but not yet reported. */
function requestsOf(member: FleetMember): number {
  const { load } = member;
  return load.runningRequests + load.waitingRequests + member.inFlightPicks;
}

/** Prompt tokens the worker is computing or has queued, with those of the picks its last report may not include. */
function prefillWaitOf(member: FleetMember): number {
  return member.load.pendingPrefillTokens + member.inFlightPrefill;
}

/** Outstanding requests per sequence the worker runs at once. */
function outstandingOf(member: FleetMember): number {
  return requestsOf(member) / Math.max(1, member.registration.maxSequences);
}

/** Whether the prompt fits `model`'s context window on `member` (an unknown window fits anything). */
function fitsContext(member: FleetMember, model: string, query: PickQuery): boolean {
  const context = contextOf(member, model);
  return context === 0 || query.estimatedInputTokens < context;
}

/** The context window of `model` on `member`; 0 when unknown. */
function contextOf(member: FleetMember, model: string): number {
  for (const served of member.registration.models) if (served.id === model) return served.contextTokens;
  return 0;
}
