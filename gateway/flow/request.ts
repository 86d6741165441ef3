/**
 * One resolved request: what a request asks, once its key, alias and profile are
 * applied and its values validated. Every API (chat, completions, responses, the public
 * gRPC services) resolves into it once (resolve.ts); the admission, pick and generate
 * messages are derived from it here, so no field is copied by hand twice.
 */
import type { PriorityClass, SamplingParams } from "../../gen/infermesh/common/v1/common.js";
import { AcquireRequest } from "../../gen/infermesh/admission/v1/admission_service.js";
import { PickRequest } from "../../gen/infermesh/router/v1/router_service.js";
import { GenerateRequest } from "../../gen/infermesh/worker/v1/worker_service.js";
import { blockHashes, canonicalPrompt, prefixBlockChars } from "../../services/common/prefix-hash.js";
import type { KeyIdentity, TenantLimits } from "../access/api-keys.js";
import type { ProfileName } from "../access/profiles.js";
import type { RequestObservation } from "../observability/request-observation.js";
import type { GenerationValues } from "../validation/generation.js";

/** Who a request is charged to, from its API key (or the anonymous default). */
export interface Caller {
  /** Fairness and rate-limit key in admission. */
  readonly tenantId: string;
  readonly priorityClass: PriorityClass;
  /** The key's limits, enforced by admission per tenant. */
  readonly limits: TenantLimits | undefined;
}

/** Where a request runs and who pays for it: what every API resolves alike. */
export interface Resolution {
  /** The gateway's request id: logs, traces, admission and the worker know it by this. */
  readonly requestId: string;
  /** The model to ask the router for (an alias and a profile resolved). */
  readonly model: string;
  /** Other served models the router may choose instead (profile `balanced`). */
  readonly alternativeModels: readonly string[];
  readonly profile: ProfileName;
  readonly caller: Caller;
  /** The key, when one was presented and known. */
  readonly identity: KeyIdentity | undefined;
  /** End-user id (OpenAI's `user`): the session-affinity key; may be empty. */
  readonly sessionId: string;
  /** What the operator sees of it: metrics and the access event. */
  readonly observation?: RequestObservation;
}

/** SamplingParams whose output bound is settled: the request's, or its profile's. */
export type ResolvedSampling = SamplingParams & { readonly maxTokens: number };

/** A generation, resolved and validated. */
export interface ResolvedGeneration extends Resolution {
  /** OpenTelemetry's gen_ai.operation.name. */
  readonly operation: "chat" | "text_completion";
  /** What the worker runs: a chat (messages) or a completion (prompt). */
  readonly values: GenerationValues & { readonly sampling: ResolvedSampling };
  /**
   * Whether it may share a running identical generation (when deterministic): the key
   * allows it (or there is none) and the caller did not ask for a fresh answer.
   */
  readonly shareable: boolean;
}

/** An embeddings request, resolved and validated. */
export interface ResolvedEmbedding extends Resolution {
  readonly inputs: readonly string[];
}

/** Prompt blocks sent to the router: it matches at most 256 (as the Inference Extension does). */
const routedPrefixBlocks = 256;

/** Four characters per token: a cheap estimate of a prompt's tokens before a worker tokenizes it. */
export const estimateTokens = (chars: number) => Math.ceil(chars / 4);

/** The estimated prompt tokens of a generation: its text and the chat framing. */
export function estimatedPromptTokens(values: Pick<GenerationValues, "messages"> & { readonly prompt?: string | undefined }): number {
  let chars = values.prompt?.length ?? 0;
  for (const message of values.messages) {
    chars += message.content.length + message.role.length + 4 + message.reasoningContent.length;
    for (const call of message.toolCalls) chars += call.name.length + call.arguments.length;
  }
  return estimateTokens(chars);
}

/** How big a request is: what admission and the router size its KV need from (services/common/kv-need.ts). */
export interface RequestSize {
  readonly estimatedInputTokens: number;
  /** Output tokens each choice may generate; 0 for embeddings. */
  readonly maxTokens: number;
  readonly choices: number;
}

export function sizeOf(request: ResolvedGeneration): RequestSize {
  return {
    estimatedInputTokens: estimatedPromptTokens(request.values),
    maxTokens: request.values.sampling.maxTokens,
    choices: request.values.sampling.n ?? 1,
  };
}

export const embeddingSizeOf = (request: ResolvedEmbedding): RequestSize => ({
  estimatedInputTokens: estimateTokens(request.inputs.reduce((sum, input) => sum + input.length, 0)),
  maxTokens: 0,
  choices: 1,
});

/** The first message of the request's Acquire stream. */
export function acquireRequestOf(request: Resolution, size: RequestSize): AcquireRequest {
  const { limits } = request.caller;
  return AcquireRequest.create({
    requestId: request.requestId,
    tenantId: request.caller.tenantId,
    priorityClass: request.caller.priorityClass,
    model: request.model,
    ...size,
    tenantLimits: limits && {
      maxConcurrency: limits.maxConcurrency,
      requestsPerMinute: limits.requestsPerMinute,
      tokensPerMinute: limits.tokensPerMinute,
    },
  });
}

/** The router's Pick; `prefixBlockHashes` only for a generation (the worker's KV cache matters). */
export function pickRequestOf(request: Resolution, size: RequestSize, values?: GenerationValues): PickRequest {
  return PickRequest.create({
    requestId: request.requestId,
    model: request.model,
    sessionId: request.sessionId,
    alternativeModels: [...request.alternativeModels],
    prefixBlockHashes: values ? blockHashes(canonicalPrompt(values), prefixBlockChars, routedPrefixBlocks) : [],
    ...size,
  });
}

/** The worker's Generate. The worker tracks the KV a session leaves behind, for memory-guard's evictions. */
export function generateRequestOf(request: ResolvedGeneration): GenerateRequest {
  return GenerateRequest.create({
    ...request.values,
    requestId: request.requestId,
    model: request.model,
    sessionId: request.sessionId,
    priorityClass: request.caller.priorityClass,
  });
}
