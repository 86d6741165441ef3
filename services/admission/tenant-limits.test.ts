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

test("tokens per minute charge the estimate; a request larger than a minute's worth waits for a full bucket", () => {
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
