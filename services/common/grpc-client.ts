import type { Channel } from "@grpc/grpc-js";
import { ClientError, createClientFactory, Status, type Client, type ClientMiddleware, type CompatServiceDefinition } from "nice-grpc";
import { isAbortError } from "abort-controller-x";

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

/** A typed client whose unary calls carry a deadline. */
export function createGrpcClient<Service extends CompatServiceDefinition>(
  definition: Service,
  channel: Channel,
  unaryTimeoutMs: number,
): Client<Service> {
  return createClientFactory().use(unaryDeadline(unaryTimeoutMs)).create(definition, channel);
}
