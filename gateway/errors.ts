import { isAbortError } from "abort-controller-x";
import { ClientError, ServerError, Status } from "nice-grpc";

/** A failure to report to the caller, classified by a gRPC status. */
export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly status: Status,
    message: string,
    readonly details: { readonly param?: string; readonly code?: string; readonly retryAfterMs?: number } = {},
  ) {
    super(message);
  }
}

/** HTTP status for a gRPC status: the one table the gateway uses. */
export function httpStatusOf(status: Status): number {
  switch (status) {
    case Status.OK:
      return 200;
    case Status.CANCELLED:
      return 499;
    case Status.UNKNOWN:
      return 500;
    case Status.INVALID_ARGUMENT:
      return 400;
    case Status.DEADLINE_EXCEEDED:
      return 504;
    case Status.NOT_FOUND:
      return 404;
    case Status.ALREADY_EXISTS:
      return 409;
    case Status.PERMISSION_DENIED:
      return 403;
    case Status.RESOURCE_EXHAUSTED:
      return 429;
    case Status.FAILED_PRECONDITION:
      return 400;
    case Status.ABORTED:
      return 409;
    case Status.OUT_OF_RANGE:
      return 400;
    case Status.UNIMPLEMENTED:
      return 501;
    case Status.INTERNAL:
      return 500;
    case Status.UNAVAILABLE:
      return 503;
    case Status.DATA_LOSS:
      return 500;
    case Status.UNAUTHENTICATED:
      return 401;
  }
}

/** OpenAI's error "type" for an HTTP status. */
export function openAiErrorType(httpStatus: number): string {
  if (httpStatus === 401) return "authentication_error";
  if (httpStatus === 403) return "permission_error";
  if (httpStatus === 429) return "rate_limit_error";
  if (httpStatus === 503) return "service_unavailable_error";
  if (httpStatus === 504) return "timeout_error";
  if (httpStatus >= 500) return "server_error";
  return "invalid_request_error";
}

/** The OpenAI error body. */
export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export function openAiErrorBody(error: ApiError): OpenAiErrorBody {
  return {
    error: {
      message: error.message,
      type: openAiErrorType(httpStatusOf(error.status)),
      param: error.details.param ?? null,
      code: error.details.code ?? null,
    },
  };
}

/** Transport failures of grpc-js name addresses and socket errors: never shown to callers. */
const transportDetail =
  /No connection established|ECONNREFUSED|ECONNRESET|Connection dropped|RST_STREAM|Call cancelled|\d+\.\d+\.\d+\.\d+:\d+|\[[0-9a-f:]+\]:\d+/i;

/** Classifies anything thrown on a request's path; internals never reach the caller. */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof ClientError && transportDetail.test(error.details)) {
    return new ApiError(error.code, `a service of the mesh is unreachable (${Status[error.code]}); retry shortly`);
  }
  if (error instanceof ClientError || error instanceof ServerError) return new ApiError(error.code, error.details);
  if (isAbortError(error)) return new ApiError(Status.CANCELLED, "the request was cancelled");
  return new ApiError(Status.INTERNAL, "internal error");
}

/**
 * Whether a failure before the first token may be retried on another worker: the worker
 * is down or full, or its engine failed (INTERNAL) before producing anything, which
 * another worker (a canary's baseline) may not. A bad request is never retried.
 */
export function retryableBeforeFirstToken(error: unknown): boolean {
  return (
    error instanceof ClientError &&
    (error.code === Status.UNAVAILABLE || error.code === Status.RESOURCE_EXHAUSTED || error.code === Status.INTERNAL)
  );
}
