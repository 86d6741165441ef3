import { RejectReason } from "../../gen/infermesh/admission/v1/admission_service.js";

/**
 * How an Acquire ended; a closed set that is also the `outcome` metrics label. Every
 * rejection maps to one RejectReason here and nowhere else.
 */
export const outcomes = [
  "granted",
  "rate_limited",
  "queue_full",
  "queue_timeout",
  /** The estimated wait exceeded the request's queue timeout at arrival. */
  "shed_early",
  /** Its place in the full queue went to a more urgent arrival. */
  "shed_for_urgent",
  /** A batch request while the fleet's KV pressure is WARN or above. */
  "shed_memory",
  "shutting_down",
  /** The caller gave up while queued. */
  "cancelled",
] as const;

export type Outcome = (typeof outcomes)[number];

/** The outcomes that answer the caller with a Rejected event. */
export type Rejection = Exclude<Outcome, "granted" | "cancelled">;

export const rejectReasonOf: Record<Rejection, RejectReason> = {
  rate_limited: RejectReason.REJECT_REASON_RATE_LIMITED,
  queue_full: RejectReason.REJECT_REASON_QUEUE_FULL,
  queue_timeout: RejectReason.REJECT_REASON_QUEUE_TIMEOUT,
  shed_early: RejectReason.REJECT_REASON_OVERLOADED,
  shed_for_urgent: RejectReason.REJECT_REASON_OVERLOADED,
  shed_memory: RejectReason.REJECT_REASON_MEMORY,
  shutting_down: RejectReason.REJECT_REASON_SHUTTING_DOWN,
};

/** The message a rejected caller reads (rate limits have their own, naming the limit). */
export function rejectionMessage(rejection: Exclude<Rejection, "rate_limited">): string {
  switch (rejection) {
    case "queue_full":
      return "the server is at capacity and its queue is full; retry later";
    case "queue_timeout":
      return "the request waited too long for capacity; retry later";
    case "shed_early":
      return "the server is overloaded: the expected wait is longer than the request's queue timeout; retry later";
    case "shed_for_urgent":
      return "the server is overloaded and gave the request's place to more urgent work; retry later";
    case "shed_memory":
      return "the server is short of KV-cache memory and is not taking batch work; retry later";
    case "shutting_down":
      return "admission is shutting down; retry on another replica";
  }
}
