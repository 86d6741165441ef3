import type { TenantLimits } from "../../gen/infermesh/admission/v1/admission_service.js";
import type { Clock } from "../common/clock.js";
import { MinuteBucket } from "./token-bucket.js";

/** A tenant's request over one of its limits, and when a retry could pass. */
export interface LimitExceeded {
  readonly limit: "max_concurrency" | "requests_per_minute" | "tokens_per_minute";
  readonly retryAfterMs: number;
}

/** A request charged to its tenant. */
export interface TenantCharge {
  /** Output tokens the request generated since the last call: taken from the tokens-per-minute bucket, into debt if need be. */
  chargeOutput(tokens: number): void;
  /** The request's slot ended. Idempotent. */
  release(): void;
  /** The request never got a slot: its per-minute charges are given back. Idempotent. */
  refund(): void;
}

/** Tenant limits, of one replica (TenantLimiter) or of all (SharedTenantLimiter). */
export interface TenantLimiting {
  /**
   * Charges one request to its tenant when every limit allows it: the request itself
   * and its input tokens. Returns the exceeded limit, or the charge: `release()` when
   * the request's slot ends, `refund()` when it never got one.
   */
  admit(
    tenantId: string,
    limits: TenantLimits | undefined,
    inputTokens: number,
  ): LimitExceeded | TenantCharge | Promise<LimitExceeded | TenantCharge>;
}

interface TenantState {
  inFlight: number;
  requests?: MinuteBucket;
  tokens?: MinuteBucket;
}

/**
 * Per-tenant limits of one admission replica: concurrency, requests per minute and
 * tokens per minute. Tokens are charged as they are known: the input estimate at
 * admission, the output as the caller reports it streaming. Charging the output bound
 * up front instead would count max_tokens that are mostly never generated; charging
 * output afterwards lets one long answer overdraw the bucket, and the debt then holds
 * back the tenant's next requests until the refill pays it. The limits travel with
 * each request, from the caller's API key, so a changed key takes effect on its next
 * request. This is one replica's view: replicas share limits through Redis
 * (shared/shared-tenant-limits.ts).
 */
export class TenantLimiter implements TenantLimiting {
  private readonly tenants = new Map<string, TenantState>();

  constructor(private readonly clock: Clock) {}

  /**
   * Charges one request to its tenant when every limit allows it: the request itself
   * and its input tokens. Returns the exceeded limit, or the charge: `release()` when
   * the request's slot ends, `refund()` when it never got one (queue full, timed out,
   * cancelled), which also releases it.
   */
  admit(tenantId: string, limits: TenantLimits | undefined, inputTokens: number): LimitExceeded | TenantCharge {
    const state = this.tenants.get(tenantId) ?? { inFlight: 0 };
    const nowMs = this.clock.now();
    if (limits?.maxConcurrency !== undefined && state.inFlight >= limits.maxConcurrency) {
      return { limit: "max_concurrency", retryAfterMs: 1_000 };
    }
    if (limits?.requestsPerMinute !== undefined) {
      state.requests ??= new MinuteBucket(limits.requestsPerMinute, nowMs);
      const waitMs = state.requests.waitMs(1, nowMs, limits.requestsPerMinute);
      if (waitMs > 0) return { limit: "requests_per_minute", retryAfterMs: waitMs };
    }
    if (limits?.tokensPerMinute !== undefined) {
      state.tokens ??= new MinuteBucket(limits.tokensPerMinute, nowMs);
      const waitMs = state.tokens.waitMs(inputTokens, nowMs, limits.tokensPerMinute);
      if (waitMs > 0) return { limit: "tokens_per_minute", retryAfterMs: waitMs };
    }
    const requests = limits?.requestsPerMinute !== undefined ? state.requests : undefined;
    const tokens = limits?.tokensPerMinute !== undefined ? state.tokens : undefined;
    requests?.take(1, nowMs);
    tokens?.take(inputTokens, nowMs);
    state.inFlight += 1;
    this.tenants.set(tenantId, state);
    let released = false;
    let refunded = false;
    const release = () => {
      if (released) return;
      released = true;
      state.inFlight -= 1;
      if (state.inFlight === 0 && !state.requests && !state.tokens) this.tenants.delete(tenantId);
    };
    return {
      chargeOutput: (outputTokens) => {
        if (!refunded && outputTokens > 0) tokens?.take(outputTokens, this.clock.now());
      },
      release,
      refund: () => {
        if (released) return;
        refunded = true;
        requests?.refund(1);
        tokens?.refund(inputTokens);
        release();
      },
    };
  }

  /** Requests of a tenant holding slots. */
  inFlight(tenantId: string): number {
    return this.tenants.get(tenantId)?.inFlight ?? 0;
  }
}
