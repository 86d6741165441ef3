import type { Client } from "nice-grpc";
import { pushable } from "it-pushable";
import type { ConnectRequest, LoadReport, RouterServiceDefinition } from "../../gen/infermesh/router/v1/router_service.js";
import { keepConnected, logReconnect } from "../common/backoff.js";
import type { Logger } from "../common/logger.js";
import type { KvBlockEvent } from "./engines/engine.js";
import type { WorkerRuntime } from "./worker-service.js";

/**
 * Keeps the worker in the router's fleet: opens Connect, registers, sends a load report
 * on every change and at the interval the router asks for, and reconnects with backoff
 * whenever the stream breaks (a router restart included).
 */
export function keepRegistered(options: {
  client: Client<typeof RouterServiceDefinition>;
  workerId: string;
  address: string;
  runtime: WorkerRuntime;
  /** Subscribes to engine load changes. */
  onLoadChange: (listener: () => void) => void;
  onDrain: (reason: string) => void;
  logger: Logger;
  signal: AbortSignal;
}): Promise<void> {
  const { runtime, logger } = options;
  let sendReport: (() => void) | undefined;
  let sendKvEvent: ((event: KvBlockEvent) => void) | undefined;
  options.onLoadChange(() => sendReport?.());
  runtime.engine?.onKvEvent((event) => sendKvEvent?.(event));
  const sendsKvEvents = runtime.engine?.heldBlocks !== undefined;
  const currentLoad = (): LoadReport => {
    const load = runtime.engine?.load();
    return {
      runningRequests: load?.runningRequests ?? 0,
      waitingRequests: load?.waitingRequests ?? 0,
      kvUsedTokens: load?.kvUsedTokens ?? 0,
      kvTotalTokens: load?.kvTotalTokens ?? 0,
      tokensPerSecond: load?.tokensPerSecond ?? 0,
      prefixCacheQueries: load?.prefixCacheQueries ?? 0,
      prefixCacheHits: load?.prefixCacheHits ?? 0,
      state: runtime.state,
    };
  };

  return keepConnected(
    async (signal) => {
      const outgoing = pushable<ConnectRequest>({ objectMode: true });
      outgoing.push({
        event: {
          $case: "register",
          value: {
            workerId: options.workerId,
            address: options.address,
            models: runtime.engine?.models() ?? [],
            device: runtime.engine?.device ?? "",
            maxSequences: runtime.engine?.maxSequences ?? 0,
            state: runtime.state,
            sendsKvEvents,
          },
        },
      });
      let timer: NodeJS.Timeout | undefined;
      try {
        for await (const response of options.client.connect(outgoing, { signal })) {
          if (response.event?.$case === "registered") {
            logger.info({ router_interval_ms: response.event.value.reportIntervalMs }, "registered with the router");
            sendReport = () => outgoing.push({ event: { $case: "loadReport", value: currentLoad() } });
            sendReport();
            if (sendsKvEvents && !sendKvEvent) {
              // The router starts from an empty table: everything held now, then changes.
              const held = runtime.engine?.heldBlocks?.() ?? [];
              outgoing.push({ event: { $case: "kvEvents", value: { storedBlockHashes: [...held], evictedBlockHashes: [], cleared: true } } });
              sendKvEvent = (event) =>
                outgoing.push({ event: { $case: "kvEvents", value: { storedBlockHashes: [...event.stored], evictedBlockHashes: [...event.evicted], cleared: false } } });
            }
            clearInterval(timer);
            timer = setInterval(sendReport, response.event.value.reportIntervalMs);
          } else if (response.event?.$case === "drain") {
            options.onDrain(response.event.value.reason);
            sendReport?.();
          }
        }
      } finally {
        sendReport = undefined;
        sendKvEvent = undefined;
        clearInterval(timer);
        outgoing.end();
      }
    },
    options.signal,
    logReconnect(logger, "router stream lost; re-registering"),
  );
}

