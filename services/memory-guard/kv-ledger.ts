import { PressureLevel } from "../../gen/infermesh/common/v1/common.js";
import type { DevicePressure, WatchResponse } from "../../gen/infermesh/memory/v1/memory_service.js";

/** Usage ratios at which a device enters warn and critical pressure. */
export interface PressureThresholds {
  readonly warnRatio: number;
  readonly criticalRatio: number;
}

interface DeviceAccount {
  device: string;
  reportedUsedTokens: number;
  totalTokens: number;
  idleSequences: number;
  /** Whether the worker has reported at all (an entry may come from a reservation first). */
  reported: boolean;
  readonly reservations: Map<number, number>;
  level: PressureLevel;
}

/**
 * KV-cache accounting per worker device. A device's usage is the larger of what its
 * worker last reported and what open reservations hold, so a burst of new generations
 * counts before the next report arrives.
 */
export class KvLedger {
  private readonly devices = new Map<string, DeviceAccount>();
  private readonly listeners = new Set<() => void>();
  private nextReservationId = 1;

  constructor(private readonly thresholds: PressureThresholds) {}

  /** Calls `listener` after every change of any device's numbers or level. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  report(workerId: string, device: string, usedTokens: number, totalTokens: number, idleSequences: number): void {
    const account = this.account(workerId);
    account.device = device;
    account.reportedUsedTokens = usedTokens;
    account.totalTokens = totalTokens;
    account.idleSequences = idleSequences;
    account.reported = true;
    this.changed(account);
  }

  /** Drops a device whose worker left. */
  remove(workerId: string): void {
    if (this.devices.delete(workerId)) this.emit();
  }

  /** Records a reservation; the returned function releases it (idempotent). */
  reserve(workerId: string, tokens: number): () => void {
    const account = this.account(workerId);
    const id = this.nextReservationId++;
    account.reservations.set(id, tokens);
    this.changed(account);
    return () => {
      if (!account.reservations.delete(id)) return;
      // An entry that only ever held reservations goes when the last one does.
      if (!account.reported && account.reservations.size === 0 && this.devices.get(workerId) === account) {
        this.devices.delete(workerId);
        this.emit();
      } else {
        this.changed(account);
      }
    };
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

  private account(workerId: string): DeviceAccount {
    let account = this.devices.get(workerId);
    if (!account) {
      account = {
        device: "",
        reportedUsedTokens: 0,
        totalTokens: 0,
        idleSequences: 0,
        reported: false,
        reservations: new Map(),
        level: PressureLevel.PRESSURE_LEVEL_NORMAL,
      };
      this.devices.set(workerId, account);
    }
    return account;
  }

  private changed(account: DeviceAccount): void {
    account.level = this.levelFor(effectiveUsed(account), account.totalTokens);
    this.emit();
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

function effectiveUsed(account: DeviceAccount): number {
  let reserved = 0;
  for (const tokens of account.reservations.values()) reserved += tokens;
  return Math.max(account.reportedUsedTokens, reserved);
}
