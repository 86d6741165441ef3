import type { TenantLimits } from "../../gen/infermesh/admission/v1/admission_service.js";
import type { Clock } from "../common/clock.js";

/** A tenant's request over one of its limits, and when a retry could pass. */
export interface LimitExceeded {
  readonly limit: "max_concurrency" | "requests_per_minute" | "tokens_per_minute";
  readonly retryAfterMs: number;
}

/** A refilling allowance of `perMinute` units, holding at most one minute's worth. */
class MinuteBucket {
  private available: number;
  private updatedAtMs: number;

  constructor(
    private perMinute: number,
    nowMs: number,
  ) {
    this.available = perMinute;
    this.updatedAtMs = nowMs;
  }

  /** How long until `amount` could be taken; 0 now. A request bigger than a minute's worth waits for a full bucket. */
  waitMs(amount: number, nowMs: number, perMinute: number): number {
    this.refill(nowMs, perMinute);
    const needed = Math.min(amount, this.perMinute);
    return this.available >= needed ? 0 : Math.ceil(((needed - this.available) * 60_000) / this.perMinute);
  }

  take(amount: number): void {
    this.available -= amount;
  }

  /** Gives back what a request took and did not use (it was never granted). */
  refund(amount: number): void {
    this.available = Math.min(this.perMinute, this.available + amount);
  }

  private refill(nowMs: number, perMinute: number): void {
    this.perMinute = perMinute;
    this.available = Math.min(perMinute, this.available + ((nowMs - this.updatedAtMs) * perMinute) / 60_000);
    this.updatedAtMs = nowMs;
  }
}

/** A request charged to its tenant. */
export interface TenantCharge {
  /** The request's slot ended. Idempotent. */
  release(): void;
  /** The request never got a slot: its per-minute charges are given back. Idempotent. */
  refund(): void;
}

interface TenantState {
  inFlight: number;
  requests?: MinuteBucket;
  tokens?: MinuteBucket;
}

/**
 * Per-tenant limits of one admission replica: concurrency, requests per minute and
 * tokens per minute (input estimate plus output bound, charged at grant). The limits
 * travel with each request, from the caller's API key, so a changed key takes effect
 * on its next request. Several replicas each enforce the whole limit (shared counters
 * are the multi-replica work).
 */
export class TenantLimiter {
  private readonly tenants = new Map<string, TenantState>();

  constructor(private readonly clock: Clock) {}

  /**
   * Charges one request to its tenant when every limit allows it. Returns the exceeded
   * limit, or the charge: `release()` when the request's slot ends, `refund()` when it
   * never got one (queue full, timed out, cancelled), which also releases it.
   */
  admit(tenantId: string, limits: TenantLimits | undefined, tokens: number): LimitExceeded | TenantCharge {
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
      const waitMs = state.tokens.waitMs(tokens, nowMs, limits.tokensPerMinute);
      if (waitMs > 0) return { limit: "tokens_per_minute", retryAfterMs: waitMs };
    }
    const charged = { requests: limits?.requestsPerMinute !== undefined, tokens: limits?.tokensPerMinute !== undefined };
    if (charged.requests) state.requests!.take(1);
    if (charged.tokens) state.tokens!.take(tokens);
    state.inFlight += 1;
    this.tenants.set(tenantId, state);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      state.inFlight -= 1;
      if (state.inFlight === 0 && !state.requests && !state.tokens) this.tenants.delete(tenantId);
    };
    return {
      release,
      refund: () => {
        if (released) return;
        if (charged.requests) state.requests?.refund(1);
        if (charged.tokens) state.tokens?.refund(tokens);
        release();
      },
    };
  }

  /** Requests of a tenant holding slots. */
  inFlight(tenantId: string): number {
    return this.tenants.get(tenantId)?.inFlight ?? 0;
  }
}
