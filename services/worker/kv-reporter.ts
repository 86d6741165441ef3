import type { Client } from "nice-grpc";
import { pushable } from "it-pushable";
import type { MemoryGuardServiceDefinition, ReportRequest } from "../../gen/infermesh/memory/v1/memory_service.js";
import { keepConnected, logReconnect } from "../common/backoff.js";
import type { Logger } from "../common/logger.js";
import type { WorkerRuntime } from "./worker-service.js";

/**
 * Streams the engine's KV usage to memory-guard (on change, at most every
 * `minIntervalMs`, and at least every `maxIntervalMs`) and carries out its eviction
 * commands. Reconnects with backoff.
 */
export function keepReportingKv(options: {
  client: Client<typeof MemoryGuardServiceDefinition>;
  workerId: string;
  runtime: WorkerRuntime;
  onLoadChange: (listener: () => void) => void;
  logger: Logger;
  signal: AbortSignal;
  maxIntervalMs?: number;
}): Promise<void> {
  const { runtime, logger } = options;
  let report: (() => void) | undefined;
  options.onLoadChange(() => report?.());
  return keepConnected(
    async (signal) => {
      const outgoing = pushable<ReportRequest>({ objectMode: true });
      report = () => {
        const load = runtime.engine?.load();
        if (!load || !runtime.engine) return;
        outgoing.push({
          event: {
            $case: "kvReport",
            value: {
              workerId: options.workerId,
              device: runtime.engine.device,
              kvUsedTokens: load.kvUsedTokens,
              kvTotalTokens: load.kvTotalTokens,
              idleSequences: load.idleSequences,
            },
          },
        });
      };
      report();
      const timer = setInterval(() => report?.(), options.maxIntervalMs ?? 1_000);
      try {
        for await (const command of options.client.report(outgoing, { signal })) {
          if (command.event?.$case === "evictIdle" && runtime.engine) {
            const freed = await runtime.engine.evictIdle(command.event.value.targetFreeTokens);
            logger.info({ asked: command.event.value.targetFreeTokens, freed }, "evicted idle sequences for memory-guard");
          }
        }
      } finally {
        report = undefined;
        clearInterval(timer);
        outgoing.end();
      }
    },
    options.signal,
    logReconnect(logger, "memory-guard stream lost; reconnecting"),
  );
}
