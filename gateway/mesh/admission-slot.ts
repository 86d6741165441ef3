import { pushable } from "it-pushable";
import { Status } from "nice-grpc";
import { RejectReason, type AcquireRequest } from "../../gen/infermesh/admission/v1/admission_service.js";
import { ApiError } from "../errors.js";
import type { MeshClients } from "./clients.js";

/** A granted admission slot; held until released. */
export interface AdmissionSlot {
  readonly queuedMs: number;
  /** Closes our side of the Acquire stream, which frees the slot in admission. Idempotent. */
  release(): void;
}

/**
 * Opens an Acquire stream and waits for the grant. The slot lives exactly as long as
 * the stream: `release()` half-closes it (admission then ends it), and `signal`
 * aborting or this process dying breaks it. A rejection becomes RESOURCE_EXHAUSTED (or
 * UNAVAILABLE when admission is stopping) with the retry delay admission gave.
 */
export async function acquireSlot(clients: MeshClients, request: AcquireRequest, signal: AbortSignal): Promise<AdmissionSlot> {
  // Our side: the request, then open until released. Closing it, rather than
  // cancelling the call, spares admission an HTTP/2 reset per request.
  const outgoing = pushable<AcquireRequest>({ objectMode: true });
  outgoing.push(request);
  const release = () => outgoing.end();
  try {
    // Read with next() rather than for-await: leaving a for-await loop would cancel
    // the call, and with it the slot.
    const responses = clients.admission.acquire(outgoing, { signal })[Symbol.asyncIterator]();
    for (;;) {
      const next = await responses.next();
      if (next.done) break;
      const event = next.value.event;
      if (event?.$case === "granted") {
        // Admission sends nothing more; the pending read only ends when the stream does.
        responses.next().catch(() => undefined);
        return { queuedMs: event.value.queuedMs, release };
      }
      if (event?.$case === "rejected") {
        const { message, retryAfterMs, reason } = event.value;
        const status = reason === RejectReason.REJECT_REASON_SHUTTING_DOWN ? Status.UNAVAILABLE : Status.RESOURCE_EXHAUSTED;
        const code = status === Status.UNAVAILABLE ? "server_unavailable" : reason === RejectReason.REJECT_REASON_RATE_LIMITED ? "rate_limit_exceeded" : "server_overloaded";
        throw new ApiError(status, message, { code, retryAfterMs });
      }
    }
    throw new ApiError(Status.UNAVAILABLE, "admission closed the stream without a decision");
  } catch (error) {
    release();
    throw error;
  }
}
