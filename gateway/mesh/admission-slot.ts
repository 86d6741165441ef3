import { pushable } from "it-pushable";
import { Status } from "nice-grpc";
import { AcquireRequest, RejectReason, type Rejected } from "../../gen/infermesh/admission/v1/admission_service.js";
import { ApiError } from "../errors.js";
import type { MeshCall, MeshClients } from "./clients.js";

/** A granted admission slot; held until released. */
export interface AdmissionSlot {
  readonly queuedMs: number;
  /**
   * Tells admission the output generated so far (cumulative), which it charges to the
   * tenant's tokens per minute. Ignored once released.
   */
  reportOutputTokens(outputTokens: number): void;
  /** Closes our side of the Acquire stream, which frees the slot in admission. Idempotent. */
  release(): void;
}

/**
 * Opens an Acquire stream and waits for the grant. The slot lives exactly as long as
 * the stream: `release()` half-closes it (admission then ends it), and the call's
 * signal aborting or this process dying breaks it. A rejection becomes an ApiError with the
 * retry delay admission gave (see rejectionError).
 */
export async function acquireSlot(clients: MeshClients, request: AcquireRequest, call: MeshCall): Promise<AdmissionSlot> {
  // Our side: the request, then open until released. Closing it, rather than
  // cancelling the call, spares admission an HTTP/2 reset per request.
  const outgoing = pushable<AcquireRequest>({ objectMode: true });
  outgoing.push(request);
  let released = false;
  const release = () => {
    released = true;
    outgoing.end();
  };
  const reportOutputTokens = (outputTokens: number) => {
    if (!released) outgoing.push(AcquireRequest.create({ outputTokens }));
  };
  try {
    // Read with next() rather than for-await: leaving a for-await loop would cancel
    // the call, and with it the slot.
    const responses = clients.admission.acquire(outgoing, call)[Symbol.asyncIterator]();
    for (;;) {
      const next = await responses.next();
      if (next.done) break;
      const event = next.value.event;
      if (event?.$case === "granted") {
        // Admission sends nothing more; the pending read only ends when the stream does.
        responses.next().catch(() => undefined);
        return { queuedMs: event.value.queuedMs, reportOutputTokens, release };
      }
      if (event?.$case === "rejected") throw rejectionError(event.value);
    }
    throw new ApiError(Status.UNAVAILABLE, "admission closed the stream without a decision");
  } catch (error) {
    release();
    throw error;
  }
}

/**
 * What OpenAI clients expect: the caller's own rate limit is RESOURCE_EXHAUSTED (429
 * `rate_limit_exceeded`, retry after the delay); the server's capacity (queue full or
 * timed out, shed under load or memory pressure) is UNAVAILABLE (503
 * `server_overloaded`), which SDKs retry with backoff; a stopping admission is 503
 * `server_unavailable`. Both carry the delay as Retry-After.
 */
export function rejectionError(rejected: Rejected): ApiError {
  const { message, retryAfterMs } = rejected;
  switch (rejected.reason) {
    case RejectReason.REJECT_REASON_RATE_LIMITED:
      return new ApiError(Status.RESOURCE_EXHAUSTED, message, { code: "rate_limit_exceeded", retryAfterMs });
    case RejectReason.REJECT_REASON_SHUTTING_DOWN:
      return new ApiError(Status.UNAVAILABLE, message, { code: "server_unavailable", retryAfterMs });
    case RejectReason.REJECT_REASON_QUEUE_FULL:
    case RejectReason.REJECT_REASON_QUEUE_TIMEOUT:
    case RejectReason.REJECT_REASON_OVERLOADED:
    case RejectReason.REJECT_REASON_MEMORY:
    case RejectReason.REJECT_REASON_UNSPECIFIED:
    case RejectReason.UNRECOGNIZED:
      // A reason newer than this gateway is the server's capacity too.
      return new ApiError(Status.UNAVAILABLE, message, { code: "server_overloaded", retryAfterMs });
  }
}
