import { forever, isAbortError } from "abort-controller-x";
import { ServerError, Status, type CallContext, type ServiceImplementation } from "nice-grpc";
import { Counter, Gauge, type Registry } from "prom-client";
import {
  type AcquireRequest,
  type AcquireResponse,
  AdmissionServiceDefinition,
  RejectReason,
} from "../../gen/infermesh/admission/v1/admission_service.js";
import { PriorityClass } from "../../gen/infermesh/common/v1/common.js";
import type { Logger } from "../common/logger.js";
import type { ConcurrencyLimiter } from "./concurrency-limiter.js";
import type { TenantLimiter } from "./tenant-limits.js";

const rejectReasons = {
  queue_full: RejectReason.REJECT_REASON_QUEUE_FULL,
  queue_timeout: RejectReason.REJECT_REASON_QUEUE_TIMEOUT,
  shutting_down: RejectReason.REJECT_REASON_SHUTTING_DOWN,
} as const;

export interface AdmissionServiceDeps {
  readonly limiter: ConcurrencyLimiter;
  readonly tenants: TenantLimiter;
  readonly defaultQueueTimeoutMs: number;
  readonly registry: Registry;
  readonly logger: Logger;
}

/** AdmissionService: a granted slot is held until the caller closes its side of the Acquire stream. */
export function createAdmissionService(
  deps: AdmissionServiceDeps,
): ServiceImplementation<typeof AdmissionServiceDefinition> {
  const { limiter, logger } = deps;
  const outcomes = new Counter({
    name: "infermesh_admission_outcomes_total",
    help: "Acquire outcomes",
    labelNames: ["outcome"] as const,
    registers: [deps.registry],
  });
  let grantedTotal = 0;
  let rejectedTotal = 0;
  new Gauge({
    name: "infermesh_admission_in_flight",
    help: "Slots granted and not yet released",
    registers: [deps.registry],
    collect() {
      this.set(limiter.inFlightCount);
    },
  });
  new Gauge({
    name: "infermesh_admission_queued",
    help: "Requests waiting for a slot",
    registers: [deps.registry],
    collect() {
      this.set(limiter.queuedCount);
    },
  });

  return {
    async *acquire(requests: AsyncIterable<AcquireRequest>, context: CallContext): AsyncIterable<AcquireResponse> {
      const incoming = requests[Symbol.asyncIterator]();
      const first = await incoming.next();
      if (first.done) throw new ServerError(Status.INVALID_ARGUMENT, "send one AcquireRequest first");
      const request = first.value;
      // The slot lives until the caller closes its side (the release) or the call ends.
      const release = new AbortController();
      const onCancel = () => release.abort();
      context.signal.addEventListener("abort", onCancel, { once: true });
      let misuse: ServerError | undefined;
      void incoming.next().then(
        (next) => {
          if (!next.done) misuse = new ServerError(Status.INVALID_ARGUMENT, "one AcquireRequest per stream");
          release.abort();
        },
        () => release.abort(),
      );
      try {
        yield* admit(request, release.signal);
      } finally {
        context.signal.removeEventListener("abort", onCancel);
      }
      if (misuse) throw misuse;
    },

    async getStats() {
      return {
        inFlight: limiter.inFlightCount,
        queued: limiter.queuedCount,
        capacity: limiter.capacity,
        grantedTotal,
        rejectedTotal,
      };
    },
  };

  /** One request's admission: its tenant's limits, then a slot held until `released` aborts. */
  async function* admit(request: AcquireRequest, released: AbortSignal): AsyncGenerator<AcquireResponse> {
    if (request.priorityClass === PriorityClass.PRIORITY_CLASS_UNSPECIFIED) {
      throw new ServerError(Status.INVALID_ARGUMENT, "priority_class must be set");
    }
    if (request.model === "") throw new ServerError(Status.INVALID_ARGUMENT, "model must be set");
    const tenantId = request.tenantId || "anonymous";
    const tenantGrant = deps.tenants.admit(tenantId, request.tenantLimits, request.estimatedInputTokens + request.maxOutputTokens);
    if (!("release" in tenantGrant)) {
      rejectedTotal += 1;
      outcomes.inc({ outcome: "rate_limited" });
      logger.debug({ request_id: request.requestId, tenant: tenantId, limit: tenantGrant.limit }, "rate limited");
      yield {
        event: {
          $case: "rejected",
          value: {
            reason: RejectReason.REJECT_REASON_RATE_LIMITED,
            message: `Rate limit reached for tenant ${tenantId} on ${tenantGrant.limit.replaceAll("_", " ")}; retry later.`,
            retryAfterMs: Math.max(1, tenantGrant.retryAfterMs),
          },
        },
      };
      return;
    }
    const progress = { granted: false };
    try {
      yield* holdSlot(request, released, progress);
    } finally {
      // Budgets pay for work that ran: a request that never got a slot is refunded.
      if (progress.granted) tenantGrant.release();
      else tenantGrant.refund();
    }
  }

  /** Queues for a slot and holds it until `released` aborts; `progress.granted` says whether it got one. */
  async function* holdSlot(request: AcquireRequest, released: AbortSignal, progress: { granted: boolean }): AsyncGenerator<AcquireResponse> {
    const ticket = limiter.request(request.queueTimeoutMs ?? deps.defaultQueueTimeoutMs, released);
    if (ticket.queuePosition !== undefined) {
      yield { event: { $case: "queued", value: { position: ticket.queuePosition, estimatedWaitMs: ticket.estimatedWaitMs } } };
    }
    let outcome;
    try {
      outcome = await ticket.outcome;
    } catch (error) {
      // Released while queued: the caller gave up.
      outcomes.inc({ outcome: "cancelled" });
      if (isAbortError(error)) return;
      throw error;
    }
    if (outcome.kind === "rejected") {
      rejectedTotal += 1;
      outcomes.inc({ outcome: outcome.reason });
      logger.debug({ request_id: request.requestId, reason: outcome.reason }, "rejected");
      yield {
        event: {
          $case: "rejected",
          value: {
            reason: rejectReasons[outcome.reason],
            message: rejectionMessage(outcome.reason),
            retryAfterMs: Math.max(1, outcome.retryAfterMs),
          },
        },
      };
      return;
    }
    const { slot } = outcome;
    progress.granted = true;
    grantedTotal += 1;
    outcomes.inc({ outcome: "granted" });
    try {
      yield { event: { $case: "granted", value: { slotId: slot.id, queuedMs: slot.queuedMs } } };
      // Hold the slot until the caller closes its side (or vanishes).
      await forever(released).catch(() => undefined);
    } finally {
      slot.release();
    }
  }
}

function rejectionMessage(reason: keyof typeof rejectReasons): string {
  switch (reason) {
    case "queue_full":
      return "the server is at capacity and its queue is full; retry later";
    case "queue_timeout":
      return "the request waited too long for capacity; retry later";
    case "shutting_down":
      return "admission is shutting down; retry on another replica";
  }
}
