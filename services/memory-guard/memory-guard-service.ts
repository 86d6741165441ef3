import { pushable } from "it-pushable";
import { ServerError, Status, type CallContext, type ServiceImplementation } from "nice-grpc";
import { Counter, Gauge, type Registry } from "prom-client";
import { PressureLevel } from "../../gen/infermesh/common/v1/common.js";
import type {
  MemoryGuardServiceDefinition,
  ReportRequest,
  ReportResponse,
  WatchResponse,
} from "../../gen/infermesh/memory/v1/memory_service.js";
import type { Logger } from "../common/logger.js";
import { type DecisionEvents, noDecisionEvents } from "../common/decision-events.js";
import type { KvLedger } from "./kv-ledger.js";

export interface MemoryGuardServiceDeps {
  readonly ledger: KvLedger;
  readonly registry: Registry;
  readonly logger: Logger;
  /** Evictions asked of workers. */
  readonly events?: DecisionEvents;
  /** Aborts when the process shuts down, ending long-lived streams. */
  readonly lifetime: AbortSignal;
}

/** MemoryGuardService: KV accounting from worker reports (usage and reservations), pressure to watchers. */
export function createMemoryGuardService(deps: MemoryGuardServiceDeps): ServiceImplementation<typeof MemoryGuardServiceDefinition> {
  const { ledger, logger } = deps;
  const events = deps.events ?? noDecisionEvents;
  const evictions = new Counter({
    name: "infermesh_memory_evict_requests_total",
    help: "EvictIdle commands sent to workers",
    registers: [deps.registry],
  });
  const sessionEvictions = new Counter({
    name: "infermesh_memory_session_evictions_total",
    help: "Idle sessions whose KV memory-guard asked their worker to evict, least recently used first",
    labelNames: ["worker_id"] as const,
    registers: [deps.registry],
  });
  const labels = ["worker_id", "device"] as const;
  const sessionsGauge = new Gauge({
    name: "infermesh_memory_resident_sessions",
    help: "Sessions holding KV per device, as its worker reports",
    labelNames: labels,
    registers: [deps.registry],
  });
  const usedGauge = new Gauge({
    name: "infermesh_memory_kv_used_tokens",
    help: "KV cells in use per device",
    labelNames: labels,
    registers: [deps.registry],
  });
  const totalGauge = new Gauge({
    name: "infermesh_memory_kv_total_tokens",
    help: "KV cells per device",
    labelNames: labels,
    registers: [deps.registry],
  });
  const levelGauge = new Gauge({
    name: "infermesh_memory_pressure_level",
    help: "Pressure level per device: 1 normal, 2 warn, 3 critical",
    labelNames: labels,
    registers: [deps.registry],
  });
  ledger.onChange(() => {
    usedGauge.reset();
    totalGauge.reset();
    levelGauge.reset();
    sessionsGauge.reset();
    for (const device of ledger.snapshot().devices) {
      const deviceLabels = { worker_id: device.workerId, device: device.device };
      sessionsGauge.set(deviceLabels, ledger.residentSessions(device.workerId));
      usedGauge.set(deviceLabels, device.kvUsedTokens);
      totalGauge.set(deviceLabels, device.kvTotalTokens);
      levelGauge.set(deviceLabels, device.level);
    }
  });

  return {
    async *report(requests: AsyncIterable<ReportRequest>, context: CallContext): AsyncIterable<ReportResponse> {
      const signal = AbortSignal.any([context.signal, deps.lifetime]);
      const commands = pushable<ReportResponse>({ objectMode: true });
      let workerId: string | undefined;
      let lastLevel = PressureLevel.PRESSURE_LEVEL_UNSPECIFIED;
      let evictAskedAt = 0;
      const consume = async () => {
        for await (const request of requests) {
          if (request.event?.$case !== "kvReport") continue;
          const report = request.event.value;
          if (report.workerId === "") throw new ServerError(Status.INVALID_ARGUMENT, "kv_report.worker_id must be set");
          if (workerId !== undefined && workerId !== report.workerId) {
            throw new ServerError(Status.INVALID_ARGUMENT, "one Report stream carries one worker");
          }
          if (workerId === undefined) logger.info({ worker_id: report.workerId, device: report.device }, "worker reporting");
          workerId = report.workerId;
          ledger.report(workerId, {
            device: report.device,
            usedTokens: report.kvUsedTokens,
            totalTokens: report.kvTotalTokens,
            idleSequences: report.idleSequences,
            reservedTokens: report.kvReservedTokens,
            idleSessions: report.idleSessions,
            residentSessions: report.residentSessions,
          });
          const level = ledger.levelOf(workerId);
          if (level !== lastLevel) {
            lastLevel = level;
            commands.push({ event: { $case: "pressureChanged", value: { level } } });
            // A worker lists its idle sessions only once it knows it is at warn: its next report.
            if (report.residentSessions > 0) continue;
          }
          // Under warn: the least recently used idle sessions go first; an engine that
          // cannot name its sessions frees idle sequences instead.
          const excess = ledger.excessOverWarn(workerId);
          if (excess > 0 && Date.now() - evictAskedAt > 1_000) {
            const sessions = ledger.sessionsToEvict(workerId, excess);
            if (sessions.length > 0) {
              evictAskedAt = Date.now();
              sessionEvictions.inc({ worker_id: workerId }, sessions.length);
              commands.push({ event: { $case: "evictSessions", value: { sessionIds: sessions } } });
              events("memory.evict", { worker_id: workerId, excess_tokens: excess, sessions: sessions.length });
            } else if (report.idleSequences > 0) {
              evictAskedAt = Date.now();
              evictions.inc();
              commands.push({ event: { $case: "evictIdle", value: { targetFreeTokens: excess } } });
            }
          }
        }
      };
      void consume().then(
        () => commands.end(),
        (error: unknown) => commands.end(error instanceof Error ? error : new Error(String(error))),
      );
      const onAbort = () => commands.end();
      signal.addEventListener("abort", onAbort, { once: true });
      try {
        yield* commands;
      } finally {
        signal.removeEventListener("abort", onAbort);
        if (workerId !== undefined) {
          ledger.remove(workerId);
          logger.info({ worker_id: workerId }, "worker stopped reporting");
        }
      }
    },

    async *watch(_request, context: CallContext): AsyncIterable<WatchResponse> {
      const signal = AbortSignal.any([context.signal, deps.lifetime]);
      const snapshots = pushable<WatchResponse>({ objectMode: true });
      let last = "";
      const publish = () => {
        const snapshot = ledger.snapshot();
        const key = JSON.stringify(snapshot);
        if (key === last) return;
        last = key;
        snapshots.push(snapshot);
      };
      const unsubscribe = ledger.onChange(publish);
      const onAbort = () => snapshots.end();
      signal.addEventListener("abort", onAbort, { once: true });
      publish();
      try {
        yield* snapshots;
      } finally {
        unsubscribe();
        signal.removeEventListener("abort", onAbort);
      }
    },
  };
}
