import assert from "node:assert/strict";
import test from "node:test";
import { ManualClock } from "../common/clock.js";
import { MinuteBucket } from "./token-bucket.js";

test("a bucket refills continuously and never holds more than a minute's worth", () => {
  const clock = new ManualClock();
  const bucket = new MinuteBucket(600, clock.now());
  bucket.take(600, clock.now());
  assert.equal(bucket.waitMs(10, clock.now(), 600), 1_000, "10 units come back in 1 s at 600 a minute");
  clock.advance(1_000);
  assert.equal(bucket.waitMs(10, clock.now(), 600), 0);
  clock.advance(10 * 60_000);
  assert.equal(bucket.waitMs(601, clock.now(), 600), 0, "a request over a minute's worth waits for a full bucket only");
  bucket.take(601, clock.now());
  assert.equal(bucket.waitMs(1, clock.now(), 600), 200, "the full bucket did not grow past 600 while idle");
});

test("usage reported after the fact puts the bucket into debt; the wait covers the debt plus the new request", () => {
  const clock = new ManualClock();
  const bucket = new MinuteBucket(1_000, clock.now());
  bucket.take(100, clock.now()); // input, at admission
  assert.equal(bucket.waitMs(100, clock.now(), 1_000), 0);
  bucket.take(1_400, clock.now()); // output, as it streamed: 500 in debt
  assert.equal(bucket.waitMs(100, clock.now(), 1_000), 36_000, "(500 debt + 100 input) at 1,000 a minute");
  clock.advance(35_999);
  assert.ok(bucket.waitMs(100, clock.now(), 1_000) > 0, "still short a millisecond before");
  clock.advance(1);
  assert.equal(bucket.waitMs(100, clock.now(), 1_000), 0);
});

test("a refund gives back what was taken, up to a full bucket", () => {
  const clock = new ManualClock();
  const bucket = new MinuteBucket(100, clock.now());
  bucket.take(80, clock.now());
  bucket.refund(80);
  assert.equal(bucket.waitMs(100, clock.now(), 100), 0);
  bucket.refund(50);
  bucket.take(100, clock.now());
  assert.equal(bucket.waitMs(1, clock.now(), 100), 600, "the refund did not overfill the bucket");
});
