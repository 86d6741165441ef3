import type { MeshClients } from "../mesh/clients.js";
import type { ModelCatalog } from "../mesh/models.js";
import type { RequestObserver } from "../observability/request-observation.js";
import type { SharedGenerations } from "./shared-generations.js";

/** What the flows need; built once in main. */
export interface FlowDeps {
  readonly clients: MeshClients;
  readonly catalog: ModelCatalog;
  /** Starts each request's observation (metrics and access event). */
  readonly observer: RequestObserver;
  /** Every request's deadline, from arrival to its last token. */
  readonly requestTimeoutMs: number;
  /** Identical deterministic requests share a generation (the gateway's dedupeRequests); undefined when off. */
  readonly shared?: SharedGenerations;
}
