import type { FastifyRequest } from "fastify";
import type { AccessControl, ResolvedRequest } from "../access/access-control.js";
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

/** The header a request names its profile with. */
export const profileHeader = "x-infermesh-profile";

/** Applies the request's key, alias and profile. */
export function resolveRequest(
  deps: HttpDeps,
  request: FastifyRequest,
  model: string,
  maxTokens: number | null | undefined,
  user: string | null | undefined,
): Promise<ResolvedRequest> {
  const header = request.headers[profileHeader];
  return deps.access.resolve(request.identity, model, Array.isArray(header) ? header[0] : header, maxTokens, user ?? "");
}
