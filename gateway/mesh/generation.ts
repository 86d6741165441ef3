import { ClientError, Status } from "nice-grpc";
import type { PickRequest, PickResponse } from "../../gen/infermesh/router/v1/router_service.js";
import type { GenerateRequest, GenerateResponse, WorkerServiceDefinition } from "../../gen/infermesh/worker/v1/worker_service.js";
import type { Client } from "nice-grpc";
import type { TraceOptions } from "../../services/common/telemetry/tracing.js";
import { ApiError, retryableBeforeFirstToken } from "../errors.js";
import type { MeshCall, MeshClients } from "./clients.js";

/** At most this many workers are tried for one request (the pick plus two retries). */
const maxAttempts = 3;

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
  request: GenerateRequest,
  pick: PickResponse,
  call: MeshCall,
  onRetry: () => void = () => undefined,
): AsyncGenerator<GenerationEvent> {
  const { signal } = call;
  let lastError: unknown;
  for (const candidate of pick.candidates.slice(0, maxAttempts)) {
    if (lastError !== undefined) onRetry();
    // A balanced pick may run another model than the one asked for.
    const model = candidate.model || request.model;
    const events = clients.worker(candidate.address).generate(model === request.model ? request : { ...request, model }, call);
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
    /** Whether the worker sent its last event (it closes the stream right after). */
    let ended = false;
    try {
      ended = isTerminal(first.value.event);
      yield first.value.event;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        if (!next.value.event) continue;
        ended = isTerminal(next.value.event);
        yield next.value.event;
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
    } finally {
      // A caller that stops at the last event waits for the stream's end (it is on its
      // way): cancelling would cost the worker an HTTP/2 reset per request, which
      // servers rate-limit. One that stops earlier cancels the call, and the decoding.
      if (ended) await iterator.next().catch(() => undefined);
      else await iterator.return?.();
    }
  }
  throw lastError ?? new ApiError(Status.UNAVAILABLE, "no worker could start the request");
}

const isTerminal = (event: GenerationEvent) => event.$case === "finished" || event.$case === "error";

/**
 * Runs a unary call that does the request's work (Embed) on the first picked worker
 * that answers it; a retryable failure moves on to the next candidate (at most two
 * more). The request's call (its deadline) bounds it, and is `work`'s call too: the
 * work can outlast a unary call's usual deadline.
 */
export async function withWorker<T>(
  clients: MeshClients,
  pick: PickResponse,
  call: MeshCall,
  work: (worker: Client<typeof WorkerServiceDefinition, TraceOptions>, call: MeshCall) => Promise<T>,
): Promise<T> {
  const { signal } = call;
  let lastError: unknown;
  for (const candidate of pick.candidates.slice(0, maxAttempts)) {
    try {
      return await work(clients.workerForWork(candidate.address), call);
    } catch (error) {
      if (signal.aborted || !retryableBeforeFirstToken(error)) throw error;
      lastError = error;
    }
  }
  throw lastError ?? new ApiError(Status.UNAVAILABLE, "no worker could take the request");
}

/** Asks the router for the ordered candidates of a request. */
export function pickWorkers(clients: MeshClients, request: PickRequest, call: MeshCall): Promise<PickResponse> {
  return clients.router.pick(request, call);
}
