import { PressureLevel, ServingState, type ModelInfo } from "../../gen/infermesh/common/v1/common.js";
import { LoadReport, type Register, type WorkerStatus } from "../../gen/infermesh/router/v1/router_service.js";
import type { Clock } from "../common/clock.js";
import { LoadIndex } from "./load-index.js";

/**
 * One connected worker as the router sees it. A class, not an object literal: a pick
 * reads these fields for every worker of a large fleet, and V8 keeps a class's
 * instances in fast mode (an object literal with an accessor is a dictionary, several
 * times slower to read).
 */
export class FleetMember {
  load: LoadReport;
  lastReportAtMs: number;
  /** Prompt and output tokens of the picks in `recentPicks`. */
  inFlightTokens = 0;
  /** Prompt tokens those picks will compute (what the worker's cache was thought not to hold). */
  inFlightPrefill = 0;
  /** When each pick the last load report may not include yet was made, its tokens and its prefill, oldest first. */
  readonly recentPicks: { atMs: number; requestId: string; tokens: number; prefill: number }[] = [];
  /** An admin drained it: no new work until it registers again. */
  draining = false;

  constructor(
    /** What the worker registered with; its models change when an admin loads or unloads one. */
    public registration: Register,
    /** Identifies the Connect stream that owns this entry (a reconnect replaces it). */
    readonly connectionId: number,
    public pressure: PressureLevel,
    now: number,
    /**
     * Its place among the fleet's members, dense and reused once it leaves (below
     * Fleet.indexLimit): what per-member tables outside the fleet (a pick's scratch)
     * are indexed by.
     */
    readonly index: number,
  ) {
    this.load = LoadReport.create({ state: registration.state });
    this.lastReportAtMs = now;
  }

  /** Picks the last load report may not include yet: the router's bridge between reports. */
  get inFlightPicks(): number {
    return this.recentPicks.length;
  }
}

/** How the fleet judges its members. */
export interface FleetTiming {
  /** A member whose last report is older than this takes no work. */
  readonly staleAfterMs: number;
  /** Reports younger than this are fresh; health declines from here to staleness. */
  readonly freshReportMs: number;
  /**
   * A pick counts as in flight until a load report lists its request as arrived, or
   * for at most this long: its request may have gone to another candidate, or nowhere.
   */
  readonly pickExpireMs: number;
}

/**
 * The live fleet. A worker is a member exactly while its Connect stream is open; a
 * member whose reports stop arriving is treated as gone after `staleAfterMs`.
 */
export class Fleet {
  private readonly members = new Map<string, FleetMember>();
  /** Members by a model they serve; rebuilt when membership or models change, not per pick. */
  private servingCache: Map<string, FleetMember[]> | undefined;
  private readonly modelsEverServed = new Set<string>();
  private nextConnectionId = 1;
  /** Indexes members left, for the next to join; `indexLimit` bounds those ever given. */
  private readonly freeIndexes: number[] = [];
  private nextIndex = 0;
  /** The members by load, per model: updated here as reports and picks change it. */
  readonly byLoad = new LoadIndex();

  constructor(
    private readonly clock: Clock,
    private readonly timing: FleetTiming,
  ) {}

  join(registration: Register): FleetMember {
    const previous = this.members.get(registration.workerId);
    const pressure = previous?.pressure ?? PressureLevel.PRESSURE_LEVEL_NORMAL;
    // A reconnect replaces the entry and keeps its index.
    const index = previous?.index ?? this.freeIndexes.pop() ?? this.nextIndex++;
    const member = new FleetMember(registration, this.nextConnectionId++, pressure, this.clock.now(), index);
    if (previous) this.byLoad.remove(previous);
    this.members.set(registration.workerId, member);
    this.byLoad.update(member);
    this.servingCache = undefined;
    for (const model of registration.models) this.modelsEverServed.add(model.id);
    return member;
  }

  /** The connected member with this id. */
  member(workerId: string): FleetMember | undefined {
    return this.members.get(workerId);
  }

  /** Removes the member if `connectionId` still owns it. */
  leave(workerId: string, connectionId: number): boolean {
    const member = this.members.get(workerId);
    if (member?.connectionId !== connectionId) return false;
    this.servingCache = undefined;
    this.byLoad.remove(member);
    this.freeIndexes.push(member.index);
    return this.members.delete(workerId);
  }

  report(member: FleetMember, load: LoadReport): void {
    const now = this.clock.now();
    member.load = load;
    member.lastReportAtMs = now;
    const picks = member.recentPicks;
    if (picks.length > 0) {
      const arrived = load.arrivedRequestIds.length > 0 ? new Set(load.arrivedRequestIds) : undefined;
      let kept = 0;
      for (const pick of picks) if (now - pick.atMs < this.timing.pickExpireMs && !arrived?.has(pick.requestId)) picks[kept++] = pick;
      picks.length = kept;
    }
    member.inFlightTokens = 0;
    member.inFlightPrefill = 0;
    for (const pick of member.recentPicks) {
      member.inFlightTokens += pick.tokens;
      member.inFlightPrefill += pick.prefill;
    }
    this.reindex(member);
  }

  /** Moves `member` in the load index, unless a reconnect has replaced it. */
  private reindex(member: FleetMember): void {
    if (this.members.get(member.registration.workerId) === member) this.byLoad.update(member);
  }

  /** Every member's index is below this. */
  get indexLimit(): number {
    return this.nextIndex;
  }

  /** The fleet's clock. */
  now(): number {
    return this.clock.now();
  }

  /** Counts a request just sent to `member` until a load report lists it (or `pickExpireMs` passes). */
  notePick(member: FleetMember, requestId: string, tokens: number, prefill = 0): void {
    member.recentPicks.push({ atMs: this.clock.now(), requestId, tokens, prefill });
    member.inFlightTokens += tokens;
    member.inFlightPrefill += prefill;
    this.reindex(member);
  }

  /**
   * How far the router trusts a member, in [0,1]: 1 while its reports are fresh,
   * falling to 0.5 as the last one nears staleness; memory pressure at warn takes a
   * fifth off; and it is scaled by the share of its recent generations that succeeded
   * (a worker failing a third of them is avoided). The router avoids members below 0.7.
   */
  health(member: FleetMember, now = this.clock.now()): number {
    const { freshReportMs, staleAfterMs } = this.timing;
    const age = now - member.lastReportAtMs;
    const freshness =
      age <= freshReportMs ? 1 : Math.max(0.5, 1 - (0.5 * (age - freshReportMs)) / Math.max(1, staleAfterMs - freshReportMs));
    const succeeding = 1 - Math.min(1, Math.max(0, member.load.recentFailureRatio));
    return (member.pressure === PressureLevel.PRESSURE_LEVEL_WARN ? freshness * 0.8 : freshness) * succeeding;
  }

  /** The member now serves exactly `models`. */
  setModels(member: FleetMember, models: readonly ModelInfo[]): void {
    const current = this.members.get(member.registration.workerId) === member;
    if (current) this.byLoad.remove(member);
    member.registration = { ...member.registration, models: [...models] };
    if (current) this.byLoad.update(member);
    this.servingCache = undefined;
    for (const model of models) this.modelsEverServed.add(model.id);
  }

  setPressure(workerId: string, level: PressureLevel): void {
    const member = this.members.get(workerId);
    if (member) member.pressure = level;
  }

  /** Members that may take new work for `model` now. */
  eligible(model: string): FleetMember[] {
    const now = this.clock.now();
    return this.serving(model).filter((member) => this.takesWork(member, now));
  }

  /** Members whose registration lists `model`, whatever their state. */
  serving(model: string): readonly FleetMember[] {
    if (!this.servingCache) {
      this.servingCache = new Map();
      for (const member of this.members.values()) {
        for (const served of member.registration.models) {
          const list = this.servingCache.get(served.id);
          if (list) list.push(member);
          else this.servingCache.set(served.id, [member]);
        }
      }
    }
    return this.servingCache.get(model) ?? [];
  }

  /** Whether a member takes new work now: serving, not drained, not at critical pressure, reporting. */
  takesWork(member: FleetMember, now = this.clock.now()): boolean {
    return (
      member.load.state === ServingState.SERVING_STATE_SERVING &&
      !member.draining &&
      member.pressure !== PressureLevel.PRESSURE_LEVEL_CRITICAL &&
      now - member.lastReportAtMs <= this.timing.staleAfterMs
    );
  }

  hasEverServed(model: string): boolean {
    return this.modelsEverServed.has(model);
  }

  list(): WorkerStatus[] {
    const now = this.clock.now();
    return [...this.members.values()].map((member) => this.status(member, now));
  }

  /** The router's view of one member. */
  status(member: FleetMember, now = this.clock.now()): WorkerStatus {
    return {
      registration: member.registration,
      // The arrivals were for the in-flight accounting; a listing has no use for them.
      load: { ...member.load, arrivedRequestIds: [] },
      reportAgeMs: Math.round(now - member.lastReportAtMs),
      inFlightPicks: member.inFlightPicks,
      draining: member.draining,
    };
  }
}
