import { ClientError, Status } from "nice-grpc";
import type { ChatMessage, SamplingParams } from "../../gen/infermesh/common/v1/common.js";
import type { PickResponse } from "../../gen/infermesh/router/v1/router_service.js";
import type { GenerateResponse } from "../../gen/infermesh/worker/v1/worker_service.js";
import { ApiError, retryableBeforeFirstToken } from "../errors.js";
import type { MeshClients } from "./clients.js";

/** At most this many workers are tried for one request (the pick plus two retries). */
const maxAttempts = 3;

/** One generation as the gateway asks for it. */
export interface GenerationRequest {
  readonly requestId: string;
  readonly model: string;
  readonly messages: readonly ChatMessage[];
  readonly sampling: SamplingParams;
  readonly estimatedInputTokens: number;
  readonly sessionId: string;
}

/** A worker event, or the terminal failure of a stream that had already started. */
export type GenerationEvent = NonNullable<GenerateResponse["event"]>;

/**
 * Streams the generation from the first of the picked workers that starts it. A worker
 * that fails before its first event with a retryable status is skipped for the next
 * candidate; after the first event a failure ends the stream with an error event.
 * Errors before any event are thrown.
 */
export async function* generate(
  clients: MeshClients,
  request: GenerationRequest,
  pick: PickResponse,
  signal: AbortSignal,
): AsyncGenerator<GenerationEvent> {
  let lastError: unknown;
  for (const candidate of pick.candidates.slice(0, maxAttempts)) {
    const events = clients.worker(candidate.address).generate(
      {
        requestId: request.requestId,
        model: request.model,
        messages: [...request.messages],
        prompt: undefined,
        sampling: request.sampling,
      },
      { signal },
    );
    const iterator = events[Symbol.asyncIterator]();
    let first: IteratorResult<GenerateResponse>;
    try {
      first = await iterator.next();
    } catch (error) {
      if (!signal.aborted && retryableBeforeFirstToken(error)) {
        lastError = error;
        continue;
      }
      throw error;
    }
    if (first.done || !first.value.event) throw new ApiError(Status.INTERNAL, "the worker ended the stream without events");
    yield first.value.event;
    try {
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        if (next.value.event) yield next.value.event;
      }
    } catch (error) {
      if (signal.aborted) throw error;
      const status = error instanceof ClientError ? error.code : Status.INTERNAL;
      yield {
        $case: "error",
        value: {
          statusCode: status === Status.UNAVAILABLE || status === Status.CANCELLED ? Status.UNAVAILABLE : status,
          message: `the worker failed during generation (${Status[status]})`,
          retryable: true,
        },
      };
      return;
    }
  }
  throw lastError ?? new ApiError(Status.UNAVAILABLE, "no worker could start the request");
}

/** Asks the router for the ordered candidates of a request. */
export function pickWorkers(clients: MeshClients, request: GenerationRequest, signal: AbortSignal): Promise<PickResponse> {
  return clients.router.pick(
    {
      requestId: request.requestId,
      model: request.model,
      estimatedInputTokens: request.estimatedInputTokens,
      excludeWorkerIds: [],
      sessionId: request.sessionId,
    },
    { signal },
  );
}
