import { Histogram, type Registry } from "prom-client";
import type { MeshClients } from "../mesh/clients.js";
import type { ModelCatalog } from "../mesh/models.js";
import type { SharedGenerations } from "./shared-generations.js";

/** What the flows need; built once in main. */
export interface FlowDeps {
  readonly clients: MeshClients;
  readonly catalog: ModelCatalog;
  readonly metrics: FlowMetrics;
  /** Every request's deadline, from arrival to its last token. */
  readonly requestTimeoutMs: number;
  /** Identical deterministic requests share a generation (the gateway's dedupeRequests); undefined when off. */
  readonly shared?: SharedGenerations;
}

/** Latency histograms of the flows. */
export interface FlowMetrics {
  readonly queueSeconds: Histogram;
  readonly timeToFirstTokenSeconds: Histogram;
}

export function createFlowMetrics(registry: Registry): FlowMetrics {
  return {
    queueSeconds: new Histogram({
      name: "infermesh_gateway_queue_seconds",
      help: "Time from arrival to the admission grant",
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30],
      registers: [registry],
    }),
    timeToFirstTokenSeconds: new Histogram({
      name: "infermesh_gateway_time_to_first_token_seconds",
      help: "Time from arrival to the first generated text",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
  };
}
