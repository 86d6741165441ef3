import type { Client } from "nice-grpc";
import { pushable, type Pushable } from "it-pushable";
import type { ConnectRequest, LoadReport, RouterServiceDefinition } from "../../gen/infermesh/router/v1/router_service.js";
import { keepConnected, logReconnect } from "../common/backoff.js";
import type { Logger } from "../common/logger.js";
import { Throttle } from "../common/throttle.js";
import type { ArrivalsReader } from "./arrivals.js";
import type { OutcomeReader } from "./outcome-log.js";
import type { EngineHost } from "./engine-host.js";

/**
 * Keeps the worker in one router replica's fleet (the worker runs one of these per
 * replica, each with its own state): opens Connect, registers, sends a load report
 * (with the prefix blocks stored and evicted since the last) on change, at most every
 * `minReportIntervalMs` and at least at the interval the router asks for, and
 * reconnects with backoff whenever the stream breaks (a router restart included).
 */
export function keepRegistered(options: {
  client: Client<typeof RouterServiceDefinition>;
  workerId: string;
  address: string;
  runtime: EngineHost;
  onDrain: (reason: string) => void;
  logger: Logger;
  signal: AbortSignal;
  /** Least time between two reports; see the worker's `reportMinIntervalMs`. */
  minReportIntervalMs: number;
  /** GPUs the model is split across; see the worker's `tensorParallelSize`. */
  tensorParallelSize: number;
  /** Recent generations' failure ratio, reported with the load. */
  failureRatio: () => number;
  /** Requests that reached the engine, this router's list: each report lists those since the last one. */
  arrivals: ArrivalsReader;
  /** How generations ended, this router's log: each report carries those since the last one. */
  outcomes?: OutcomeReader;
}): Promise<void> {
  const { runtime, logger } = options;
  let throttle: Throttle | undefined;
  /** Block changes since the last report: true stored, false evicted (the last change wins). */
  let blockChanges: Map<number, boolean> | undefined;
  runtime.onLoadChange(() => throttle?.trigger());
  runtime.onKvEvent((event) => {
    if (!blockChanges || !throttle) return;
    for (const hash of event.stored) blockChanges.set(hash, true);
    for (const hash of event.evicted) blockChanges.set(hash, false);
    throttle.trigger();
  });
  /** Sends what the router must know when the models change: the list, and an empty prefix table. */
  let sendModels: (() => void) | undefined;
  runtime.onModelsChanged(() => sendModels?.());
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
      pendingPrefillTokens: load?.pendingPrefillTokens ?? 0,
      arrivedRequestIds: options.arrivals.take(),
      outcomes: options.outcomes?.take() ?? [],
      state: runtime.state,
      recentFailureRatio: options.failureRatio(),
    };
  };

  /** One report: the block changes since the last one, then the load. */
  const report = (outgoing: Pushable<ConnectRequest>) => {
    if (blockChanges && blockChanges.size > 0) {
      const stored: number[] = [];
      const evicted: number[] = [];
      for (const [hash, held] of blockChanges) (held ? stored : evicted).push(hash);
      blockChanges.clear();
      outgoing.push({ event: { $case: "kvEvents", value: { storedBlockHashes: stored, evictedBlockHashes: evicted, cleared: false } } });
    }
    outgoing.push({ event: { $case: "loadReport", value: currentLoad() } });
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
            models: runtime.models(),
            device: runtime.engine?.device ?? "",
            maxSequences: runtime.engine?.maxSequences ?? 0,
            state: runtime.state,
            sendsKvEvents: runtime.engine?.heldBlocks !== undefined,
            tensorParallelSize: options.tensorParallelSize,
          },
        },
      });
      let timer: NodeJS.Timeout | undefined;
      // Leaving on purpose closes our side first, so the router can tell a worker that
      // left from one that was lost; the call is cut only if the router does not answer.
      const call = new AbortController();
      const leave = () => {
        outgoing.push({ event: { $case: "leave", value: { reason: "shutting down" } } });
        outgoing.end();
        setTimeout(() => call.abort(), 1_000).unref();
      };
      signal.addEventListener("abort", leave, { once: true });
      try {
        for await (const response of options.client.connect(outgoing, { signal: call.signal })) {
          if (response.event?.$case === "registered") {
            logger.info({ router_interval_ms: response.event.value.reportIntervalMs }, "registered with the router");
            if (runtime.engine?.heldBlocks && !blockChanges) {
              // The router starts from an empty table: everything held now, then changes.
              const held = runtime.engine?.heldBlocks?.() ?? [];
              outgoing.push({
                event: { $case: "kvEvents", value: { storedBlockHashes: [...held], evictedBlockHashes: [], cleared: true } },
              });
              blockChanges = new Map();
            }
            throttle ??= new Throttle(() => report(outgoing), options.minReportIntervalMs);
            sendModels = () => {
              outgoing.push({ event: { $case: "modelsChanged", value: { models: runtime.models() } } });
              if (blockChanges) {
                blockChanges.clear();
                const held = runtime.engine?.heldBlocks?.() ?? [];
                outgoing.push({
                  event: { $case: "kvEvents", value: { storedBlockHashes: [...held], evictedBlockHashes: [], cleared: true } },
                });
              }
              throttle?.flush();
            };
            throttle.flush();
            clearInterval(timer);
            timer = setInterval(() => throttle?.flush(), response.event.value.reportIntervalMs);
          } else if (response.event?.$case === "drain") {
            options.onDrain(response.event.value.reason);
            throttle?.flush();
          }
        }
      } finally {
        signal.removeEventListener("abort", leave);
        sendModels = undefined;
        throttle?.cancel();
        throttle = undefined;
        blockChanges = undefined;
        clearInterval(timer);
        outgoing.end();
      }
    },
    options.signal,
    logReconnect(logger, "router stream lost; re-registering"),
  );
}
