import { PressureLevel, ServingState, type ModelInfo } from "../../gen/infermesh/common/v1/common.js";
import type { LoadReport, Register, WorkerStatus } from "../../gen/infermesh/router/v1/router_service.js";
import type { Clock } from "../common/clock.js";

/** One connected worker as the router sees it. */
export interface FleetMember {
  /** What the worker registered with; its models change when an admin loads or unloads one. */
  registration: Register;
  /** Identifies the Connect stream that owns this entry (a reconnect replaces it). */
  readonly connectionId: number;
  load: LoadReport;
  lastReportAtMs: number;
  /** Picks sent since the last load report: the router's bridge between reports. */
  inFlightPicks: number;
  pressure: PressureLevel;
}

/**
 * The live fleet. A worker is a member exactly while its Connect stream is open; a
 * member whose reports stop arriving is treated as gone after `staleAfterMs`.
 */
export class Fleet {
  private readonly members = new Map<string, FleetMember>();
  private readonly modelsEverServed = new Set<string>();
  private nextConnectionId = 1;

  constructor(
    private readonly clock: Clock,
    private readonly staleAfterMs: number,
  ) {}

  join(registration: Register): FleetMember {
    const member: FleetMember = {
      registration,
      connectionId: this.nextConnectionId++,
      load: {
        runningRequests: 0,
        waitingRequests: 0,
        kvUsedTokens: 0,
        kvTotalTokens: 0,
        tokensPerSecond: 0,
        prefixCacheQueries: 0,
        prefixCacheHits: 0,
        state: registration.state,
      },
      lastReportAtMs: this.clock.now(),
      inFlightPicks: 0,
      pressure: this.members.get(registration.workerId)?.pressure ?? PressureLevel.PRESSURE_LEVEL_NORMAL,
    };
    this.members.set(registration.workerId, member);
    for (const model of registration.models) this.modelsEverServed.add(model.id);
    return member;
  }

  /** Removes the member if `connectionId` still owns it. */
  leave(workerId: string, connectionId: number): boolean {
    if (this.members.get(workerId)?.connectionId !== connectionId) return false;
    return this.members.delete(workerId);
  }

  report(member: FleetMember, load: LoadReport): void {
    member.load = load;
    member.lastReportAtMs = this.clock.now();
    member.inFlightPicks = 0;
  }

  /** The member now serves exactly `models`. */
  setModels(member: FleetMember, models: readonly ModelInfo[]): void {
    member.registration = { ...member.registration, models: [...models] };
    for (const model of models) this.modelsEverServed.add(model.id);
  }

  setPressure(workerId: string, level: PressureLevel): void {
    const member = this.members.get(workerId);
    if (member) member.pressure = level;
  }

  /** Members that may take new work for `model` now. */
  eligible(model: string): FleetMember[] {
    const now = this.clock.now();
    return [...this.members.values()].filter(
      (member) =>
        member.load.state === ServingState.SERVING_STATE_SERVING &&
        member.pressure !== PressureLevel.PRESSURE_LEVEL_CRITICAL &&
        now - member.lastReportAtMs <= this.staleAfterMs &&
        member.registration.models.some((served) => served.id === model),
    );
  }

  hasEverServed(model: string): boolean {
    return this.modelsEverServed.has(model);
  }

  list(): WorkerStatus[] {
    const now = this.clock.now();
    return [...this.members.values()].map((member) => ({
      registration: member.registration,
      load: member.load,
      reportAgeMs: Math.round(now - member.lastReportAtMs),
      inFlightPicks: member.inFlightPicks,
    }));
  }
}
