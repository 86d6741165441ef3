import type { Client } from "nice-grpc";
import type { MemoryGuardServiceDefinition } from "../../gen/infermesh/memory/v1/memory_service.js";
import { keepConnected, logReconnect } from "../common/backoff.js";
import type { ReplicaSet } from "../common/replica-set.js";
import type { Logger } from "../common/logger.js";
import type { MemoryGate } from "./memory-gate.js";

/**
 * Feeds memory-guard's Watch snapshots to the memory gate, reconnecting with backoff.
 * A lost stream tells the gate, whose last snapshot then holds for pressureStaleMs.
 */
export function watchMemory(
  replicas: ReplicaSet<Client<typeof MemoryGuardServiceDefinition>>,
  gate: MemoryGate,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  return keepConnected(
    async (attemptSignal) => {
      try {
        // One replica at a time (each sees every worker's reports), the next when it fails.
        for await (const snapshot of replicas.next().watch({}, { signal: attemptSignal })) gate.update(snapshot);
      } finally {
        if (!signal.aborted) gate.disconnected();
      }
    },
    signal,
    logReconnect(logger, "memory-guard watch lost; its last snapshot holds for pressureStaleMs"),
  );
}
