import type { Client } from "nice-grpc";
import type { MemoryGuardServiceDefinition } from "../../gen/infermesh/memory/v1/memory_service.js";
import { keepConnected, logReconnect } from "../common/backoff.js";
import type { ReplicaSet } from "../common/replica-set.js";
import type { Logger } from "../common/logger.js";
import type { Fleet } from "./fleet.js";

/**
 * Mirrors memory-guard's pressure into the fleet through its Watch stream, reconnecting
 * with backoff. While memory-guard is away the last known levels stay in force.
 */
export function watchPressure(
  replicas: ReplicaSet<Client<typeof MemoryGuardServiceDefinition>>,
  fleet: Fleet,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  return keepConnected(
    async (attemptSignal) => {
      // One replica at a time (each sees every worker's reports), the next when it fails.
      for await (const snapshot of replicas.next().watch({}, { signal: attemptSignal })) {
        for (const device of snapshot.devices) fleet.setPressure(device.workerId, device.level);
      }
    },
    signal,
    logReconnect(logger, "memory-guard watch lost; keeping the last known pressure"),
  );
}
