import { forever, isAbortError } from "abort-controller-x";
import { pushable } from "it-pushable";
import { ServerError, Status, type CallContext, type ServiceImplementation } from "nice-grpc";
import type { AcquireRequest, AcquireResponse, AdmissionServiceDefinition } from "../../gen/infermesh/admission/v1/admission_service.js";
import { PriorityClass } from "../../gen/infermesh/common/v1/common.js";
import type { Logger } from "../common/logger.js";
import { type DecisionEvents, noDecisionEvents } from "../common/decision-events.js";
import type { AdmissionStats } from "./admission-stats.js";
import { rejectionMessage, rejectReasonOf, type Rejection } from "./outcomes.js";
import { classOf, type ClassName } from "../common/priority-classes.js";
import type { Scheduler, Slot } from "./scheduler.js";
import type { TenantCharge, TenantLimiting } from "./tenant-limits.js";
import { kvNeedTokens } from "../common/kv-need.js";
import { callSpan, traceFields } from "../common/telemetry/tracing.js";

export interface AdmissionServiceDeps {
  readonly scheduler: Scheduler;
  readonly tenants: TenantLimiting;
  readonly stats: AdmissionStats;
  /** The longest wait of a request that names none (a reload may change it). */
  readonly defaultQueueTimeoutMs: () => number;
  readonly logger: Logger;
  /** Queued, granted and rejected, with why. */
  readonly events?: DecisionEvents;
}

/** AdmissionService: a granted slot is held until the caller closes its side of the Acquire stream. */
export function createAdmissionService(deps: AdmissionServiceDeps): ServiceImplementation<typeof AdmissionServiceDefinition> {
  const { scheduler, stats } = deps;
  const events = deps.events ?? noDecisionEvents;

  return {
    async *acquire(requests: AsyncIterable<AcquireRequest>, context: CallContext): AsyncIterable<AcquireResponse> {
      const incoming = requests[Symbol.asyncIterator]();
      const first = await incoming.next();
      if (first.done) throw new ServerError(Status.INVALID_ARGUMENT, "send one AcquireRequest first");
      const request = first.value;
      const arrivedAt = performance.now();
      // The decision events' trace ids: the call's span (a log line's own mixin cannot find it across awaits).
      const traced = traceFields(callSpan(context));
      const className = classOf(request.priorityClass);
      if (className === undefined) throw new ServerError(Status.INVALID_ARGUMENT, "priority_class must be set");
      if (request.model === "") throw new ServerError(Status.INVALID_ARGUMENT, "model must be set");

      const tenantId = request.tenantId || "anonymous";
      const charge = await deps.tenants.admit(tenantId, request.tenantLimits, request.estimatedInputTokens);
      // Shared limits answer after a Redis round trip: the caller may have gone meanwhile.
      if ("refund" in charge && context.signal.aborted) {
        charge.refund();
        return;
      }
      if (!("release" in charge)) {
        stats.record(className, "rate_limited");
        events("admission.rejected", {
          request_id: request.requestId,
          ...traced,
          tenant: tenantId,
          priority_class: className,
          model: request.model,
          reason: "rate_limited",
          limit: charge.limit,
          retry_after_ms: charge.retryAfterMs,
        });
        yield rejectedEvent(
          "rate_limited",
          `Rate limit reached for tenant ${tenantId} on ${charge.limit.replaceAll("_", " ")}; retry later.`,
          charge.retryAfterMs,
        );
        return;
      }

      // The slot lives until the caller closes its side (the release) or the call ends;
      // until then every later message is a usage report.
      const release = new AbortController();
      const onCancel = () => release.abort();
      context.signal.addEventListener("abort", onCancel, { once: true });
      let misuse: ServerError | undefined;
      let outputCharged = 0;
      void (async () => {
        for (let next = await incoming.next(); !next.done; next = await incoming.next()) {
          if (!isUsageReport(next.value)) {
            misuse = new ServerError(Status.INVALID_ARGUMENT, "one AcquireRequest per stream; later messages carry only output_tokens");
            return;
          }
          // Cumulative counts: only growth is charged, so a repeated report costs nothing.
          if (next.value.outputTokens > outputCharged) {
            charge.chargeOutput(next.value.outputTokens - outputCharged);
            outputCharged = next.value.outputTokens;
          }
        }
      })()
        .catch(() => undefined)
        .finally(() => release.abort());
      try {
        yield* holdSlot(request, tenantId, className, charge, release.signal, arrivedAt, traced);
      } finally {
        context.signal.removeEventListener("abort", onCancel);
      }
      if (misuse) throw misuse;
    },

    async getStats() {
      return stats.snapshot();
    },
  };

  /** Queues for a slot and holds it until `released` aborts; the tenant's charge is released or refunded. */
  async function* holdSlot(
    request: AcquireRequest,
    tenantId: string,
    className: ClassName,
    charge: TenantCharge,
    released: AbortSignal,
    arrivedAt: number,
    /** The call's trace ids, for its events. */
    traced: ReturnType<typeof traceFields>,
  ): AsyncGenerator<AcquireResponse> {
    let slot: Slot | undefined;
    // Ends the request's claim however this generator ends, even closed at a yield
    // while a grant was on its way: a queued request leaves the queue, a granted slot
    // is released (Slot.release is idempotent).
    const closed = new AbortController();
    // Queued events come from the scheduler's callback; they end when the outcome is known.
    const queued = pushable<AcquireResponse>({ objectMode: true });
    let wasQueued = false;
    const outcome = scheduler.request(
      {
        tenantId,
        className,
        kvNeedTokens: kvNeedTokens(request.estimatedInputTokens, request.maxTokens, request.choices),
        queueTimeoutMs: request.queueTimeoutMs ?? deps.defaultQueueTimeoutMs(),
      },
      AbortSignal.any([released, closed.signal]),
      (place) => {
        if (!wasQueued) {
          wasQueued = true;
          events("admission.queued", {
            request_id: request.requestId,
            ...traced,
            tenant: tenantId,
            priority_class: className,
            model: request.model,
            position: place.position,
            estimated_wait_ms: place.estimatedWaitMs,
          });
        }
        queued.push({ event: { $case: "queued", value: place } });
      },
    );
    outcome.then(
      () => queued.end(),
      () => queued.end(),
    );
    try {
      yield* queued;
      let result: Awaited<typeof outcome>;
      try {
        result = await outcome;
      } catch (error) {
        // Released while queued: the caller gave up.
        stats.record(className, "cancelled");
        if (isAbortError(error)) return;
        throw error;
      }
      if (result.kind === "rejected") {
        stats.record(className, result.rejection, performance.now() - arrivedAt);
        events("admission.rejected", {
          request_id: request.requestId,
          ...traced,
          tenant: tenantId,
          priority_class: className,
          model: request.model,
          reason: result.rejection,
          queued_ms: Math.round(performance.now() - arrivedAt),
          retry_after_ms: result.retryAfterMs,
        });
        yield rejectedEvent(result.rejection, rejectionMessage(result.rejection), result.retryAfterMs);
        return;
      }
      slot = result.slot;
      stats.record(className, "granted", slot.queuedMs);
      events("admission.granted", {
        request_id: request.requestId,
        ...traced,
        tenant: tenantId,
        priority_class: className,
        queued_ms: slot.queuedMs,
      });
      yield { event: { $case: "granted", value: { slotId: slot.id, queuedMs: slot.queuedMs } } };
      // Hold the slot until the caller closes its side (or vanishes).
      await forever(released).catch(() => undefined);
    } finally {
      slot?.release();
      closed.abort();
      outcome.then(
        (result) => result.kind === "granted" && result.slot.release(),
        () => undefined,
      );
      // Budgets pay for work that ran: a request that never got a slot is refunded.
      if (slot) charge.release();
      else charge.refund();
    }
  }
}

/** A later message of an Acquire stream: output_tokens and nothing else. */
function isUsageReport(message: AcquireRequest): boolean {
  return (
    message.requestId === "" &&
    message.tenantId === "" &&
    message.priorityClass === PriorityClass.PRIORITY_CLASS_UNSPECIFIED &&
    message.model === "" &&
    message.estimatedInputTokens === 0 &&
    message.maxTokens === 0 &&
    message.choices === 0 &&
    message.queueTimeoutMs === undefined &&
    message.tenantLimits === undefined
  );
}

function rejectedEvent(rejection: Rejection, message: string, retryAfterMs: number): AcquireResponse {
  return {
    event: {
      $case: "rejected",
      value: { reason: rejectReasonOf[rejection], message, retryAfterMs: Math.max(1, Math.round(retryAfterMs)) },
    },
  };
}
