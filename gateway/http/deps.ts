import type { FastifyRequest } from "fastify";
import { priorityHeaderName, profileHeaderName, type AccessControl, type ResolvedRequest } from "../access/access-control.js";
import type { KeyIdentity } from "../access/api-keys.js";
import type { FlowDeps } from "../generation-flow.js";
import type { ResponseCache } from "../response-cache/response-cache.js";

declare module "fastify" {
  interface FastifyRequest {
    /** The API key's identity; set by the auth hook, undefined when anonymous. */
    identity: KeyIdentity | undefined;
  }
}

/** What the HTTP routes need; built once in main. */
export interface HttpDeps {
  readonly flow: FlowDeps;
  readonly access: AccessControl;
  /** The response cache, when configured. */
  readonly cache: ResponseCache | undefined;
}

/** Applies the request's key, alias, profile and priority. */
export function resolveRequest(
  deps: HttpDeps,
  request: FastifyRequest,
  model: string,
  maxTokens: number | null | undefined,
  user: string | null | undefined,
): Promise<ResolvedRequest> {
  return deps.access.resolve(request.identity, {
    model,
    profileHeader: headerValue(request, profileHeaderName),
    priorityHeader: headerValue(request, priorityHeaderName),
    maxTokens,
    user: user ?? "",
  });
}

function headerValue(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
