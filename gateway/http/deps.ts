import type { FastifyRequest } from "fastify";
import { priorityHeaderName, profileHeaderName, type AccessControl } from "../access/access-control.js";
import type { KeyIdentity } from "../access/api-keys.js";
import type { FlowDeps } from "../flow/deps.js";
import type { Asked } from "../flow/resolve.js";
import type { DecisionEvents } from "../../services/common/decision-events.js";
import type { RequestObservation } from "../observability/request-observation.js";
import { bypassRequested, type ResponseCaching } from "../response-cache/response-cache.js";
import type { ResponsesStoring } from "../responses-store/responses-store.js";
import type { RequestTrace } from "./tracing.js";

declare module "fastify" {
  interface FastifyRequest {
    /** The API key's identity; set by the auth hook, undefined when anonymous. */
    identity: KeyIdentity | undefined;
    /** The observation of an API request (metrics, access event); undefined for other routes. */
    observation: RequestObservation | undefined;
    /** The request's span and trace context; undefined when not tracing, and for probes. */
    trace: RequestTrace | undefined;
  }
}

/** What the HTTP routes need; built once in main. */
export interface HttpDeps {
  readonly flow: FlowDeps;
  readonly access: AccessControl;
  /** The response cache in force, when it is on (a reload may turn it on or off). */
  readonly cache: () => ResponseCaching | undefined;
  /** Stored Responses (previous_response_id, retrieve, delete). */
  readonly responses: ResponsesStoring;
  /** Typed decision events (the response cache's). */
  readonly events: DecisionEvents;
}

/** What an HTTP request says about itself: its id, the body's model and user, the profile and priority headers. */
export function askedOf(request: FastifyRequest, model: string, user: string | null | undefined): Asked {
  return {
    requestId: request.id,
    model,
    profileHeader: headerValue(request, profileHeaderName),
    priorityHeader: headerValue(request, priorityHeaderName),
    user,
    fresh: bypassRequested(request.headers["cache-control"]),
    observation: request.observation,
  };
}

function headerValue(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
