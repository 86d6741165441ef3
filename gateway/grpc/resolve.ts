import { callTrace } from "../../services/common/telemetry/tracing.js";
import { randomUUID } from "node:crypto";
import { ServerError, Status, type CallContext } from "nice-grpc";
import { priorityHeaderName, type AccessControl } from "../access/access-control.js";
import type { StreamError } from "../../gen/infermesh/common/v1/common.js";
import { toApiError } from "../errors.js";
import type { GenerationEvent } from "../mesh/generation.js";
import type { ResolvedEmbedding, ResolvedGeneration } from "../flow/request.js";
import { type Asked, resolveEmbedding, resolveGeneration } from "../flow/resolve.js";
import type { GenerationValues } from "../validation/generation.js";
import type { FlowDeps } from "../flow/deps.js";
import type { RequestObservation } from "../observability/request-observation.js";

/** Rethrows a flow failure as the matching gRPC status, with no internals. */
export function asServerError(error: unknown): never {
  const apiError = toApiError(error);
  if (apiError.status === Status.CANCELLED) throw error;
  throw new ServerError(apiError.status, apiError.message);
}

/**
 * Runs a unary call under its observation (metrics and access event, API "grpc"): a
 * failure is its outcome, and it ends when the call does.
 */
export async function observedCall<Response>(
  deps: FlowDeps,
  context: CallContext,
  call: (observation: RequestObservation) => Promise<Response>,
): Promise<Response> {
  const observation = deps.observer.start("grpc", randomUUID(), callTrace(context));
  try {
    return await call(observation);
  } catch (error) {
    observation.fail(error);
    throw error;
  } finally {
    observation.end({ callerLeft: context.signal.aborted });
  }
}

/** A server-streaming call under its observation, as observedCall. */
export async function* observedStream<Response>(
  deps: FlowDeps,
  context: CallContext,
  call: (observation: RequestObservation) => AsyncIterable<Response>,
): AsyncGenerator<Response> {
  const observation = deps.observer.start("grpc", randomUUID(), callTrace(context));
  try {
    yield* call(observation);
  } catch (error) {
    observation.fail(error);
    throw error;
  } finally {
    observation.end({ callerLeft: context.signal.aborted });
  }
}

/** What a call says about itself: the request's model, profile and user, and the priority metadata. */
function askedOfCall(
  context: CallContext,
  request: { model: string; profile?: string; user: string },
  observation: RequestObservation,
): Asked {
  if (request.model === "") throw new ServerError(Status.INVALID_ARGUMENT, "model must be set");
  return {
    requestId: observation.requestId,
    observation,
    model: request.model,
    profileHeader: request.profile || undefined,
    priorityHeader: context.metadata.get(priorityHeaderName),
    user: request.user,
  };
}

/**
 * Resolves a generation call as the HTTP API resolves its requests (the same
 * validation, word for word, as a gRPC status): the call's key (metadata
 * `authorization`), alias, profile and priority. What only this API lacks: one choice
 * per call, since its responses carry one.
 */
export async function resolveGenerationCall(
  access: AccessControl,
  context: CallContext,
  request: { model: string; profile?: string; user: string },
  operation: ResolvedGeneration["operation"],
  values: GenerationValues,
  observation: RequestObservation,
): Promise<ResolvedGeneration> {
  const asked = askedOfCall(context, request, observation);
  try {
    const identity = access.authenticate(context.metadata.get("authorization"));
    const rules = { oneChoice: "n above 1 is served by the HTTP API only" };
    return await resolveGeneration(access, identity, asked, operation, values, rules, context.signal);
  } catch (error) {
    asServerError(error);
  }
}

/** Resolves an embeddings call: its key, alias and profile. */
export async function resolveEmbeddingCall(
  access: AccessControl,
  context: CallContext,
  request: { model: string; user: string; inputs: readonly string[] },
  observation: RequestObservation,
): Promise<ResolvedEmbedding> {
  const asked = askedOfCall(context, request, observation);
  try {
    const identity = access.authenticate(context.metadata.get("authorization"));
    return await resolveEmbedding(access, identity, asked, request.inputs, context.signal);
  } catch (error) {
    asServerError(error);
  }
}

/**
 * Relays a generation's events as a public stream's responses: a failure before the
 * first event is the call's status; after it, an error event ends the stream. The
 * generation is closed on every path (the client cancelling included).
 */
export async function* relayEvents<Response>(
  events: AsyncGenerator<GenerationEvent>,
  toResponse: (event: GenerationEvent) => Response | readonly Response[] | undefined,
  errorResponse: (error: StreamError) => Response,
): AsyncGenerator<Response> {
  let started = false;
  try {
    for (;;) {
      let next: IteratorResult<GenerationEvent>;
      try {
        next = await events.next();
      } catch (error) {
        if (!started) asServerError(error);
        const apiError = toApiError(error);
        yield errorResponse({ statusCode: apiError.status, message: apiError.message, retryable: false });
        return;
      }
      if (next.done) return;
      started = true;
      if (next.value.$case === "error") {
        yield errorResponse(next.value.value);
        return;
      }
      const response = toResponse(next.value);
      if (Array.isArray(response)) yield* response;
      else if (response !== undefined) yield response as Response;
    }
  } finally {
    await events.return(undefined);
  }
}
