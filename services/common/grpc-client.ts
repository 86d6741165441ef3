import type { Channel } from "@grpc/grpc-js";
import {
  ClientError,
  type ClientFactory,
  createClientFactory,
  Status,
  type Client,
  type ClientMiddleware,
  type CompatServiceDefinition,
} from "nice-grpc";
import { isAbortError } from "abort-controller-x";
import { traceClientCalls, type TraceOptions, tracingOn } from "./telemetry/tracing.js";

/**
 * Gives every unary call a deadline unless the caller's own signal already bounds it.
 * Streams are left alone: they live as long as the work they carry.
 */
export function unaryDeadline(timeoutMs: number): ClientMiddleware {
  return async function* unaryDeadlineMiddleware(call, options) {
    if (call.requestStream || call.responseStream) return yield* call.next(call.request, options);
    // A cleared timer rather than AbortSignal.timeout(), whose timer cannot be cancelled
    // and would fire for every finished call.
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), timeoutMs);
    const signal = options.signal ? AbortSignal.any([options.signal, deadline.signal]) : deadline.signal;
    try {
      return yield* call.next(call.request, { ...options, signal });
    } catch (error) {
      if (deadline.signal.aborted && !options.signal?.aborted && isAbortError(error)) {
        throw new ClientError(call.method.path, Status.DEADLINE_EXCEEDED, `no answer within ${timeoutMs} ms`);
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  };
}

/** A typed client whose unary calls carry a deadline, and a span when tracing (its parent in the options' `trace`). */
export function createGrpcClient<Service extends CompatServiceDefinition>(
  definition: Service,
  channel: Channel,
  unaryTimeoutMs: number,
): Client<Service, TraceOptions> {
  // Without tracing, `trace` is an option nothing reads.
  const factory: ClientFactory<TraceOptions> = tracingOn ? createClientFactory().use(traceClientCalls()) : createClientFactory();
  return factory.use(unaryDeadline(unaryTimeoutMs)).create(definition, channel);
}
