import type { Client } from "nice-grpc";
import { pushable } from "it-pushable";
import { PressureLevel } from "../../gen/infermesh/common/v1/common.js";
import type { MemoryGuardServiceDefinition, ReportRequest } from "../../gen/infermesh/memory/v1/memory_service.js";
import { keepConnected, logReconnect } from "../common/backoff.js";
import type { Logger } from "../common/logger.js";
import { Throttle } from "../common/throttle.js";
import type { EngineHost } from "./engine-host.js";
import type { KvReservations } from "./kv-reservations.js";

/** Idle sessions a report lists at most (at warn), oldest first: enough for memory-guard to pick what to evict. */
const reportedIdleSessions = 64;

/**
 * Streams the engine's KV usage and the running generations' reservations to
 * memory-guard (on change, at most every `minIntervalMs`, and at least every
 * `maxIntervalMs`), with the sessions it keeps KV for, and carries out memory-guard's
 * eviction commands. Reconnects with backoff.
 */
export function keepReportingKv(options: {
  client: Client<typeof MemoryGuardServiceDefinition>;
  workerId: string;
  runtime: EngineHost;
  reservations: KvReservations;
  logger: Logger;
  signal: AbortSignal;
  minIntervalMs: number;
  maxIntervalMs?: number;
  /** This stream's place among the memory-guard replicas' (their commands are obeyed from the primary alone); the only one without. */
  link?: LinkMember;
}): Promise<void> {
  const { runtime, logger } = options;
  let throttle: Throttle | undefined;
  runtime.onLoadChange(() => throttle?.trigger());
  options.reservations.onChange(() => throttle?.trigger());
  return keepConnected(
    async (signal) => {
      const outgoing = pushable<ReportRequest>({ objectMode: true });
      let level = PressureLevel.PRESSURE_LEVEL_NORMAL;
      const report = () => {
        const load = runtime.engine?.load();
        if (!load || !runtime.engine) return;
        // Idle sessions only while the device is at warn or above: memory-guard needs them
        // only then, and a fleet's reports stay small the rest of the time.
        const sessions = runtime.engine.residentSessions?.(level >= PressureLevel.PRESSURE_LEVEL_WARN ? reportedIdleSessions : 0);
        outgoing.push({
          event: {
            $case: "kvReport",
            value: {
              workerId: options.workerId,
              device: runtime.engine.device,
              kvUsedTokens: load.kvUsedTokens,
              kvTotalTokens: load.kvTotalTokens,
              idleSequences: load.idleSequences,
              kvReservedTokens: options.reservations.reservedTokens,
              idleSessions: (sessions?.idle ?? []).map((session) => ({
                sessionId: session.sessionId,
                kvTokens: session.kvTokens,
                idleMs: Math.max(0, Math.round(session.idleMs)),
              })),
              residentSessions: sessions?.count ?? 0,
            },
          },
        });
      };
      throttle = new Throttle(report, options.minIntervalMs);
      throttle.flush();
      const timer = setInterval(() => throttle?.flush(), options.maxIntervalMs ?? 1_000);
      try {
        for await (const command of options.client.report(outgoing, { signal })) {
          // Up once the replica answers: it sends the device's level after the first report.
          options.link?.setUp(true);
          if (command.event?.$case === "pressureChanged") {
            // At warn the next report lists the idle sessions memory-guard may evict: send it now.
            level = command.event.value.level;
            throttle?.flush();
          } else if (options.link && !options.link.isPrimary()) {
            // Another replica's stream is the primary: it sends the same eviction.
          } else if (command.event?.$case === "evictIdle" && runtime.engine) {
            const freed = await runtime.engine.evictIdle(command.event.value.targetFreeTokens);
            logger.info({ asked: command.event.value.targetFreeTokens, freed }, "evicted idle sequences for memory-guard");
          } else if (command.event?.$case === "evictSessions" && runtime.engine?.evictSessions) {
            const { sessionIds } = command.event.value;
            const freed = await runtime.engine.evictSessions(sessionIds);
            logger.info({ sessions: sessionIds.length, freed }, "evicted idle sessions for memory-guard");
          }
        }
      } finally {
        options.link?.setUp(false);
        throttle?.cancel();
        throttle = undefined;
        clearInterval(timer);
        outgoing.end();
      }
    },
    options.signal,
    logReconnect(logger, "memory-guard stream lost; reconnecting"),
  );
}

/** One memory-guard replica's stream, as the worker's PrimaryLink sees it. */
export interface LinkMember {
  setUp(up: boolean): void;
  isPrimary(): boolean;
}

/**
 * Which memory-guard replica a worker obeys: the first (by address) whose Report stream
 * is up. Every replica receives every report and decides the same evictions; obeying
 * one keeps a worker from evicting twice what was asked once.
 */
export class PrimaryLink {
  private readonly up = new Set<string>();

  member(address: string): LinkMember {
    return {
      setUp: (up) => {
        if (up) this.up.add(address);
        else this.up.delete(address);
      },
      isPrimary: () => [...this.up].sort()[0] === address,
    };
  }
}
