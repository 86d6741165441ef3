import { ServerError, Status, type CallContext } from "nice-grpc";
import { priorityHeaderName, type AccessControl, type ResolvedRequest } from "../access/access-control.js";
import type { StreamError } from "../../gen/infermesh/common/v1/common.js";
import { toApiError } from "../errors.js";
import type { GenerationEvent } from "../mesh/generation.js";
import { validateGeneration, type GenerationValues } from "../validation/generation.js";

/** Rethrows a flow failure as the matching gRPC status, with no internals. */
export function asServerError(error: unknown): never {
  const apiError = toApiError(error);
  if (apiError.status === Status.CANCELLED) throw error;
  throw new ServerError(apiError.status, apiError.message);
}

/**
 * The shared validation (the HTTP API's, word for word) as a gRPC status, then what
 * only this API lacks: one choice per call, since its responses carry one.
 */
export function validateCall(values: GenerationValues): void {
  try {
    validateGeneration(values);
  } catch (error) {
    asServerError(error);
  }
  if ((values.sampling.n ?? 1) !== 1)
    throw new ServerError(Status.INVALID_ARGUMENT, "Invalid value for 'n': n above 1 is served by the HTTP API only");
}

/** Applies the call's key (metadata `authorization`), the model alias, the profile and the priority (metadata `x-infermesh-priority`). */
export async function resolveCall(
  access: AccessControl,
  context: CallContext,
  request: { model: string; profile?: string; user: string },
  maxTokens: number | undefined,
): Promise<ResolvedRequest> {
  if (request.model === "") throw new ServerError(Status.INVALID_ARGUMENT, "model must be set");
  try {
    const identity = access.authenticate(context.metadata.get("authorization"));
    return await access.resolve(
      identity,
      {
        model: request.model,
        profileHeader: request.profile || undefined,
        priorityHeader: context.metadata.get(priorityHeaderName),
        maxTokens,
        user: request.user,
      },
      context.signal,
    );
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
