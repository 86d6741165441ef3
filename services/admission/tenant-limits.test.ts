import assert from "node:assert/strict";
import test from "node:test";
import { ManualClock } from "../common/clock.js";
import { TenantLimiter, type LimitExceeded } from "./tenant-limits.js";

const granted = (outcome: LimitExceeded | (() => void)) => {
  assert.equal(typeof outcome, "function", `expected a grant, got ${JSON.stringify(outcome)}`);
  return outcome as () => void;
};
const refused = (outcome: LimitExceeded | (() => void)) => {
  assert.notEqual(typeof outcome, "function", "expected a refusal");
  return outcome as LimitExceeded;
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
