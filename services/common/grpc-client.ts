import { ChannelCredentials, type Channel } from "@grpc/grpc-js";
import {
  ClientError,
  createChannel,
  createClientFactory,
  Status,
  type Client,
  type ClientMiddleware,
  type CompatServiceDefinition,
} from "nice-grpc";
import { isAbortError } from "abort-controller-x";

/** Client channel options: keepalives notice a dead server within seconds. */
const clientChannelOptions = Object.freeze({
  "grpc.keepalive_time_ms": 10_000,
  "grpc.keepalive_timeout_ms": 5_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.initial_reconnect_backoff_ms": 100,
  "grpc.max_reconnect_backoff_ms": 2_000,
});

/** Opens a plaintext channel to host:port (TLS is terminated by the mesh's ingress). */
export function openChannel(address: string): Channel {
  return createChannel(address, ChannelCredentials.createInsecure(), clientChannelOptions);
}

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
