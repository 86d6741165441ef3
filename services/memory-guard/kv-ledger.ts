import { PressureLevel } from "../../gen/infermesh/common/v1/common.js";
import type { DevicePressure, WatchResponse } from "../../gen/infermesh/memory/v1/memory_service.js";

/** Usage ratios at which a device enters warn and critical pressure. */
export interface PressureThresholds {
  readonly warnRatio: number;
  readonly criticalRatio: number;
}

/** One worker's KV report. */
export interface KvUsage {
  readonly device: string;
  readonly usedTokens: number;
  readonly totalTokens: number;
  readonly idleSequences: number;
  /** Prompt plus output bound of every running generation. */
  readonly reservedTokens: number;
  /** Idle sessions holding KV on the device, least recently used first (the oldest few). */
  readonly idleSessions?: readonly { readonly sessionId: string; readonly kvTokens: number; readonly idleMs: number }[];
  /** Sessions holding KV on the device, running or idle. */
  readonly residentSessions?: number;
}

interface DeviceAccount extends KvUsage {
  readonly level: PressureLevel;
}

/**
 * KV-cache accounting per worker device. A device's usage is the larger of what its
 * worker holds and what its running generations will hold at their output bound, so
 * new work counts before its tokens exist.
 */
export class KvLedger {
  private readonly devices = new Map<string, DeviceAccount>();
  private readonly listeners = new Set<() => void>();

  constructor(private thresholds: PressureThresholds) {}

  /** New pressure levels (a reload): every device's level is worked out again at once, and watchers told. */
  setThresholds(thresholds: PressureThresholds): void {
    this.thresholds = thresholds;
    for (const [workerId, account] of this.devices) {
      this.devices.set(workerId, { ...account, level: this.levelFor(effectiveUsed(account), account.totalTokens) });
    }
    this.emit();
  }

  /** Calls `listener` after every change of any device's numbers or level. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  report(workerId: string, usage: KvUsage): void {
    const level = this.levelFor(effectiveUsed(usage), usage.totalTokens);
    this.devices.set(workerId, { ...usage, level });
    this.emit();
  }

  /** Drops a device whose worker left. */
  remove(workerId: string): void {
    if (this.devices.delete(workerId)) this.emit();
  }

  levelOf(workerId: string): PressureLevel {
    return this.devices.get(workerId)?.level ?? PressureLevel.PRESSURE_LEVEL_NORMAL;
  }

  usedTokens(workerId: string): number {
    const account = this.devices.get(workerId);
    return account ? effectiveUsed(account) : 0;
  }

  totalTokens(workerId: string): number {
    return this.devices.get(workerId)?.totalTokens ?? 0;
  }

  /** Sessions holding KV on the device, as its worker last reported. */
  residentSessions(workerId: string): number {
    return this.devices.get(workerId)?.residentSessions ?? 0;
  }

  /**
   * The idle sessions to evict to free `tokens` cells, least recently used first; fewer
   * (or none) when the device's idle sessions do not hold that much.
   */
  sessionsToEvict(workerId: string, tokens: number): string[] {
    const chosen: string[] = [];
    let freed = 0;
    for (const session of this.devices.get(workerId)?.idleSessions ?? []) {
      if (freed >= tokens) break;
      chosen.push(session.sessionId);
      freed += session.kvTokens;
    }
    return chosen;
  }

  /** Cells to free to get the device back below the warn threshold (to NORMAL). */
  excessOverWarn(workerId: string): number {
    const account = this.devices.get(workerId);
    if (!account) return 0;
    const mostUsedWhileNormal = Math.ceil(this.thresholds.warnRatio * account.totalTokens) - 1;
    return Math.max(0, effectiveUsed(account) - mostUsedWhileNormal);
  }

  snapshot(): WatchResponse {
    const devices: DevicePressure[] = [...this.devices.entries()].map(([workerId, account]) => ({
      workerId,
      device: account.device,
      kvUsedTokens: effectiveUsed(account),
      kvTotalTokens: account.totalTokens,
      level: account.level,
    }));
    return {
      devices,
      maxLevel: devices.reduce((max, device) => Math.max(max, device.level), PressureLevel.PRESSURE_LEVEL_NORMAL),
      fleetFreeTokens: devices.reduce((sum, device) => sum + Math.max(0, device.kvTotalTokens - device.kvUsedTokens), 0),
    };
  }

  private levelFor(usedTokens: number, totalTokens: number): PressureLevel {
    if (totalTokens <= 0) return PressureLevel.PRESSURE_LEVEL_NORMAL;
    const ratio = usedTokens / totalTokens;
    if (ratio >= this.thresholds.criticalRatio) return PressureLevel.PRESSURE_LEVEL_CRITICAL;
    if (ratio >= this.thresholds.warnRatio) return PressureLevel.PRESSURE_LEVEL_WARN;
    return PressureLevel.PRESSURE_LEVEL_NORMAL;
  }

  private emit(): void {
    for (const listener of this.listeners) listener();
  }
}

function effectiveUsed(usage: KvUsage): number {
  return Math.max(usage.usedTokens, usage.reservedTokens);
}
