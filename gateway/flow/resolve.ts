import { Status } from "nice-grpc";
import type { AccessControl } from "../access/access-control.js";
import type { KeyIdentity } from "../access/api-keys.js";
import { ApiError } from "../errors.js";
import { type ApiRules, type GenerationValues, paramName, validateGeneration } from "../validation/generation.js";
import type { RequestObservation } from "../observability/request-observation.js";
import type { ResolvedEmbedding, ResolvedGeneration, Resolution } from "./request.js";

/** What a request says about itself, whichever API it came through. */
export interface Asked {
  readonly requestId: string;
  /** The `model` field: a model id or an alias. */
  readonly model: string;
  /** x-infermesh-profile (HTTP header or gRPC metadata, or the gRPC field), if any. */
  readonly profileHeader: string | undefined;
  /** x-infermesh-priority, if any. */
  readonly priorityHeader: string | undefined;
  /** OpenAI's `user`: the session key, and the fairness key of callers without an API key. */
  readonly user: string | null | undefined;
  /** The caller asked for a fresh answer (`Cache-Control: no-cache`): no cache, no shared generation. */
  readonly fresh?: boolean;
  readonly observation?: RequestObservation;
}

async function resolveAccess(access: AccessControl, identity: KeyIdentity | undefined, asked: Asked, signal?: AbortSignal) {
  const user = asked.user ?? "";
  const decided = await access.resolve(
    identity,
    { model: asked.model, profileHeader: asked.profileHeader, priorityHeader: asked.priorityHeader, user },
    signal,
  );
  const resolution: Resolution = {
    requestId: asked.requestId,
    model: decided.model,
    alternativeModels: decided.alternativeModels,
    profile: decided.profile,
    caller: decided.caller,
    identity,
    sessionId: user,
    observation: asked.observation,
  };
  asked.observation?.resolved(resolution);
  return { resolution, outputBound: decided.maxTokens };
}

/**
 * Validates a generation's values (the shared validation, once) and resolves it: the
 * key, alias, profile and priority, and its output bound. `max_tokens` has one default,
 * the profile's bound, whatever the API; a request may ask less, never more.
 */
export async function resolveGeneration(
  access: AccessControl,
  identity: KeyIdentity | undefined,
  asked: Asked,
  operation: ResolvedGeneration["operation"],
  values: GenerationValues,
  rules: ApiRules = {},
  signal?: AbortSignal,
): Promise<ResolvedGeneration> {
  validateGeneration(values, rules);
  const { resolution, outputBound } = await resolveAccess(access, identity, asked, signal);
  const { maxTokens } = values.sampling;
  if (maxTokens !== undefined && maxTokens > outputBound) {
    throw new ApiError(
      Status.INVALID_ARGUMENT,
      `${paramName(rules, "max_tokens")} is at most ${outputBound} under the ${resolution.profile} profile.`,
      {
        param: paramName(rules, "max_tokens"),
        code: "invalid_value",
      },
    );
  }
  const resolved: ResolvedGeneration = {
    ...resolution,
    operation,
    values: { ...values, sampling: { ...values.sampling, maxTokens: maxTokens ?? outputBound } },
    shareable: asked.fresh !== true && (identity?.dedupeRequests ?? true),
  };
  asked.observation?.generation(resolved);
  return resolved;
}

/** Resolves an embeddings request (its inputs are bounded by its API's schema). */
export async function resolveEmbedding(
  access: AccessControl,
  identity: KeyIdentity | undefined,
  asked: Asked,
  inputs: readonly string[],
  signal?: AbortSignal,
): Promise<ResolvedEmbedding> {
  const { resolution } = await resolveAccess(access, identity, asked, signal);
  asked.observation?.embedding(resolution);
  return { ...resolution, inputs };
}
