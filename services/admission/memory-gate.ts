import { PressureLevel } from "../../gen/infermesh/common/v1/common.js";
import type { WatchResponse } from "../../gen/infermesh/memory/v1/memory_service.js";
import type { Clock } from "../common/clock.js";
import type { Logger } from "../common/logger.js";
import type { KvGate } from "./scheduler.js";

export interface MemoryGateOptions {
  /** How long the last snapshot stays in force once the Watch stream is down. */
  readonly staleMs: number;
  /** Share of the fleet's KV that a batch grant must leave free. */
  readonly batchHeadroomRatio: number;
}

/** What the gate knows of the fleet, from memory-guard's last snapshot. */
interface FleetMemory {
  /** Free KV cells of the devices that take new work (below CRITICAL). */
  readonly freeTokens: number;
  /** KV cells of every device. */
  readonly totalTokens: number;
  readonly maxLevel: PressureLevel;
}

/** The gate's state for GetStats and metrics. */
export interface MemoryGateState {
  readonly active: boolean;
  /** Free KV of the last snapshot less what was granted since; 0 before any snapshot. */
  readonly freeTokens: number;
  readonly totalTokens: number;
  readonly maxLevel: PressureLevel;
}

/**
 * Memory-aware admission from memory-guard's Watch snapshots. A request may start when
 * the KV it can grow to (input estimate plus output bound) fits the fleet's free KV
 * less what was granted since the snapshot: those grants are not in memory-guard's
 * numbers yet (a worker reports a generation's reservation once it starts it), and a
 * new snapshot counts them, so each one starts the count afresh. A grant released
 * before the next snapshot is taken off again: it either never reached a worker or its
 * worker is freeing it, and counting it until some later snapshot would hold back
 * requests on an idle fleet. Batch goes first: it needs `batchHeadroomRatio` of the
 * fleet left free after its grant, and while any device is at WARN or above it is
 * refused. A request larger than the whole fleet skips the gate: it could never fit,
 * and the worker refuses it with a precise context error rather than it waiting here.
 *
 * Fail-safe: while the Watch stream is down the last snapshot stays in force for
 * `staleMs`; after that memory is ignored (the concurrency cap alone gates) until a
 * snapshot comes again. Before any snapshot the gate is open.
 */
export class MemoryGate implements KvGate {
  private fleet: FleetMemory | undefined;
  /** Counts snapshots, so a grant knows whether one has counted it since. */
  private epoch = 0;
  private grantedSinceTokens = 0;
  private connected = false;
  private stale = false;
  private staleTimer: { cancel(): void } | undefined;
  private readonly listeners: (() => void)[] = [];

  constructor(
    private readonly clock: Clock,
    private options: MemoryGateOptions,
    private readonly logger: Pick<Logger, "info" | "warn">,
  ) {}

  /** Whether memory gates grants now. */
  get active(): boolean {
    return this.fleet !== undefined && !this.stale;
  }
  /** A new batch headroom and staleness (a reload); the next decision uses them. */
  reconfigure(options: Pick<MemoryGateOptions, "batchHeadroomRatio" | "staleMs">): void {
    this.options = { ...this.options, ...options };
  }

  get shedsBatch(): boolean {
    return this.active && this.fleet!.maxLevel >= PressureLevel.PRESSURE_LEVEL_WARN;
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  /** A snapshot from the Watch stream: it replaces the last one and everything granted since. */
  update(snapshot: WatchResponse): void {
    let freeTokens = 0;
    let totalTokens = 0;
    let maxLevel = Math.max(PressureLevel.PRESSURE_LEVEL_NORMAL, snapshot.maxLevel);
    for (const device of snapshot.devices) {
      totalTokens += device.kvTotalTokens;
      maxLevel = Math.max(maxLevel, device.level);
      if (device.level < PressureLevel.PRESSURE_LEVEL_CRITICAL) freeTokens += Math.max(0, device.kvTotalTokens - device.kvUsedTokens);
    }
    this.fleet = { freeTokens, totalTokens, maxLevel };
    this.epoch += 1;
    this.grantedSinceTokens = 0;
    this.connected = true;
    this.staleTimer?.cancel();
    this.staleTimer = undefined;
    if (this.stale) {
      this.stale = false;
      this.logger.info({ freeTokens, totalTokens }, "memory-guard is back: memory-aware admission resumes");
    }
    this.emit();
  }

  /** The Watch stream ended or failed: the last snapshot holds for `staleMs`, then memory is ignored. */
  disconnected(): void {
    if (!this.connected) return;
    this.connected = false;
    this.staleTimer = this.clock.setTimer(() => {
      this.staleTimer = undefined;
      this.stale = true;
      this.logger.warn(
        { pressureStaleMs: this.options.staleMs },
        "no memory-guard snapshot for pressureStaleMs: admitting by the concurrency cap alone until it is back",
      );
      this.emit();
    }, this.options.staleMs);
  }

  admits(needTokens: number, batch: boolean): boolean {
    const fleet = this.fleet;
    if (!this.active || fleet === undefined || needTokens > fleet.totalTokens) return true;
    const leftTokens = fleet.freeTokens - this.grantedSinceTokens - needTokens;
    return leftTokens >= (batch ? this.options.batchHeadroomRatio * fleet.totalTokens : 0);
  }

  reserve(needTokens: number): () => void {
    if (!this.active || needTokens > this.fleet!.totalTokens) return () => undefined;
    this.grantedSinceTokens += needTokens;
    const epoch = this.epoch;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (epoch === this.epoch) this.grantedSinceTokens -= needTokens;
    };
  }

  state(): MemoryGateState {
    return {
      active: this.active,
      freeTokens: Math.max(0, (this.fleet?.freeTokens ?? 0) - this.grantedSinceTokens),
      totalTokens: this.fleet?.totalTokens ?? 0,
      maxLevel: this.fleet?.maxLevel ?? PressureLevel.PRESSURE_LEVEL_UNSPECIFIED,
    };
  }

  private emit(): void {
    for (const listener of this.listeners) listener();
  }
}
