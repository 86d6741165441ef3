import type { Client } from "nice-grpc";
import type { MemoryGuardServiceDefinition } from "../../gen/infermesh/memory/v1/memory_service.js";
import type { Logger } from "../common/logger.js";

/**
 * Holds a memory-guard reservation for each running generation: a Reserve stream open
 * for exactly as long as the generation runs. It does not delay the generation; if
 * memory-guard is away the generation runs unreserved and the next KV report catches up.
 */
export class KvReservations {
  constructor(
    private readonly client: Client<typeof MemoryGuardServiceDefinition> | undefined,
    private readonly workerId: string,
    private readonly logger: Logger,
  ) {}

  /** Opens the reservation; the returned function closes it (idempotent). */
  hold(requestId: string, kvTokens: number): () => void {
    const client = this.client;
    if (!client) return () => undefined;
    const closer = new AbortController();
    void (async () => {
      try {
        for await (const _event of client.reserve({ requestId, workerId: this.workerId, kvTokens }, { signal: closer.signal })) {
          // The Reserved event only confirms; the stream's lifetime is the reservation.
        }
      } catch (error) {
        if (!closer.signal.aborted) this.logger.debug({ err: error, request_id: requestId }, "KV reservation lost");
      }
    })();
    return () => closer.abort();
  }
}
