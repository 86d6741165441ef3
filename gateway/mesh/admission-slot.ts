import { pushable } from "it-pushable";
import { type Client, Status } from "nice-grpc";
import {
  AcquireRequest,
  type AdmissionServiceDefinition,
  RejectReason,
  type Rejected,
} from "../../gen/infermesh/admission/v1/admission_service.js";
import type { TraceOptions } from "../../services/common/telemetry/tracing.js";
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
 * Waits for a slot from an admission replica: the next in turn, or the one after it
 * when that one is down or stopping, so a replica's death costs a request one more
 * round trip, not an error; when all are down, it tries again for a few seconds.
 * (With several replicas, admission shares its limits through Redis: any replica's
 * grant counts against the same cap.) A rejection for the fleet's capacity or the
 * tenant's limits is final: every replica would say the same. A request that was
 * queued at a replica that died is charged again at the next one (its requests per
 * minute count it twice): the dead replica cannot refund it.
 */
export function acquireSlot(clients: MeshClients, request: AcquireRequest, call: MeshCall): Promise<AdmissionSlot> {
  return clients.admission.firstAnswer((replica) => acquireFrom(replica, request, call), {
    signal: call.signal,
    passOn: (error) => error instanceof ReplicaStopping,
    retryForMs: admissionDownRetryMs,
  });
}

/**
 * How long a request waits, when every admission replica is down, for one to come
 * back before it fails (503): about a restart's time. Nothing was sent to the caller
 * yet, so waiting costs only latency, and admission itself never answers UNAVAILABLE.
 */
const admissionDownRetryMs = 5_000;

/**
 * Opens an Acquire stream and waits for the grant. The slot lives exactly as long as
 * the stream: `release()` half-closes it (admission then ends it), and the call's
 * signal aborting or this process dying breaks it. A replica that dies after the grant
 * takes the slot's record with it; the request runs on (its share of the cap comes
 * back to the other replicas when the dead one's lease expires). A rejection becomes
 * an ApiError with the retry delay admission gave (see rejectionError).
 */
async function acquireFrom(
  admission: Client<typeof AdmissionServiceDefinition, TraceOptions>,
  request: AcquireRequest,
  call: MeshCall,
): Promise<AdmissionSlot> {
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
    const responses = admission.acquire(outgoing, call)[Symbol.asyncIterator]();
    for (;;) {
      const next = await responses.next();
      if (next.done) break;
      const event = next.value.event;
      if (event?.$case === "granted") {
        // Admission sends nothing more; the pending read only ends when the stream does.
        responses.next().catch(() => undefined);
        return { queuedMs: event.value.queuedMs, reportOutputTokens, release };
      }
      if (event?.$case === "rejected") {
        if (event.value.reason === RejectReason.REJECT_REASON_SHUTTING_DOWN) throw new ReplicaStopping(event.value);
        throw rejectionError(event.value);
      }
    }
    throw new ReplicaStopping({
      reason: RejectReason.REJECT_REASON_SHUTTING_DOWN,
      message: "admission closed the stream without a decision",
      retryAfterMs: 1_000,
    });
  } catch (error) {
    release();
    throw error;
  }
}

/** An admission replica stopping (or gone without a decision): the next replica may grant. With none left, a 503. */
class ReplicaStopping extends ApiError {
  constructor(rejected: Rejected) {
    super(Status.UNAVAILABLE, rejected.message, { code: "server_unavailable", retryAfterMs: rejected.retryAfterMs });
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
