import assert from "node:assert/strict";
import test from "node:test";
import { ManualClock } from "../common/clock.js";
import { TenantLimiter, type LimitExceeded, type TenantCharge } from "./tenant-limits.js";

const charge = (outcome: LimitExceeded | TenantCharge) => {
  assert.ok("release" in outcome, `expected a grant, got ${JSON.stringify(outcome)}`);
  return outcome;
};
const granted = (outcome: LimitExceeded | TenantCharge) => charge(outcome).release;
const refused = (outcome: LimitExceeded | TenantCharge) => {
  assert.ok(!("release" in outcome), "expected a refusal");
  return outcome;
};

test("a tenant at its concurrency limit is refused until one of its requests ends; other tenants are not", () => {
  const limiter = new TenantLimiter(new ManualClock());
  const limits = { maxConcurrency: 2, requestsPerMinute: undefined, tokensPerMinute: undefined };
  const first = granted(limiter.admit("a", limits, 10));
  granted(limiter.admit("a", limits, 10));
  assert.equal(refused(limiter.admit("a", limits, 10)).limit, "max_concurrency");
  granted(limiter.admit("b", limits, 10));
  first();
  first();
  assert.equal(limiter.inFlight("a"), 1, "a release counts once");
  granted(limiter.admit("a", limits, 10));
});

test("requests per minute refill continuously and say when a retry passes", () => {
  const clock = new ManualClock();
  const limiter = new TenantLimiter(clock);
  const limits = { maxConcurrency: undefined, requestsPerMinute: 60, tokensPerMinute: undefined };
  for (let index = 0; index < 60; index += 1) granted(limiter.admit("a", limits, 1))();
  const refusal = refused(limiter.admit("a", limits, 1));
  assert.equal(refusal.limit, "requests_per_minute");
  assert.equal(refusal.retryAfterMs, 1_000);
  clock.advance(1_000);
  granted(limiter.admit("a", limits, 1));
});

test("tokens per minute charge the input estimate at admission; a request larger than a minute's worth waits for a full bucket", () => {
  const clock = new ManualClock();
  const limiter = new TenantLimiter(clock);
  const limits = { maxConcurrency: undefined, requestsPerMinute: undefined, tokensPerMinute: 1_000 };
  granted(limiter.admit("a", limits, 600));
  const refusal = refused(limiter.admit("a", limits, 600));
  assert.equal(refusal.limit, "tokens_per_minute");
  assert.equal(refusal.retryAfterMs, 12_000);
  clock.advance(60_000);
  granted(limiter.admit("a", limits, 5_000));
  assert.equal(refused(limiter.admit("a", limits, 1)).limit, "tokens_per_minute");
});

test("a request that never got a slot gives its per-minute charges back; a refused one is not charged at all", () => {
  const limiter = new TenantLimiter(new ManualClock());
  const limits = { maxConcurrency: undefined, requestsPerMinute: 2, tokensPerMinute: 100 };
  charge(limiter.admit("a", limits, 60)).refund();
  assert.equal(limiter.inFlight("a"), 0, "a refund releases too");
  granted(limiter.admit("a", limits, 60));
  // Over the token budget: refused, and its request is not counted against the minute.
  assert.equal(refused(limiter.admit("a", limits, 60)).limit, "tokens_per_minute");
  granted(limiter.admit("a", limits, 40));
  assert.equal(refused(limiter.admit("a", limits, 1)).limit, "requests_per_minute");
});

test("output charged as it streams overdraws the bucket; the tenant's next request waits for the debt and its input", () => {
  const clock = new ManualClock();
  const limiter = new TenantLimiter(clock);
  const limits = { maxConcurrency: undefined, requestsPerMinute: undefined, tokensPerMinute: 600 };
  const first = charge(limiter.admit("a", limits, 100));
  // A large output bound costs nothing up front: the second request is admitted too.
  const second = charge(limiter.admit("a", limits, 100));
  first.chargeOutput(300);
  first.chargeOutput(400); // 100 + 100 + 700 = 900 of 600: 300 in debt
  first.release();
  second.release();
  const refusal = refused(limiter.admit("a", limits, 60));
  assert.equal(refusal.limit, "tokens_per_minute");
  assert.equal(refusal.retryAfterMs, 36_000, "(300 debt + 60 input) at 600 a minute");
  assert.ok("release" in limiter.admit("b", limits, 60), "other tenants are unaffected");
  clock.advance(36_000);
  granted(limiter.admit("a", limits, 60));
});

test("a refunded request charges no output", () => {
  const limiter = new TenantLimiter(new ManualClock());
  const limits = { maxConcurrency: undefined, requestsPerMinute: undefined, tokensPerMinute: 100 };
  const never = charge(limiter.admit("a", limits, 50));
  never.refund();
  never.chargeOutput(500);
  granted(limiter.admit("a", limits, 100));
});
