import test from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "./clock.js";
import { Throttle } from "./throttle.js";

test("the first change is sent at once; a burst inside the interval is sent once, at its end", () => {
  const clock = new ManualClock();
  const sentAt: number[] = [];
  const throttle = new Throttle(() => sentAt.push(clock.now()), 10, clock);
  throttle.trigger();
  assert.deepEqual(sentAt, [0]);
  clock.advance(2);
  throttle.trigger();
  clock.advance(3);
  throttle.trigger();
  throttle.trigger();
  assert.deepEqual(sentAt, [0], "changes inside the interval wait");
  clock.advance(5);
  assert.deepEqual(sentAt, [0, 10], "the last change is sent when the interval ends");
  clock.advance(100);
  assert.deepEqual(sentAt, [0, 10], "nothing more without a change");
  throttle.trigger();
  assert.deepEqual(sentAt, [0, 10, 110], "after a quiet spell a change goes at once");
});

test("flush sends now and takes the pending send with it; cancel drops it", () => {
  const clock = new ManualClock();
  let sent = 0;
  const throttle = new Throttle(() => sent++, 10, clock);
  throttle.trigger();
  throttle.trigger();
  throttle.flush();
  assert.equal(sent, 2);
  clock.advance(50);
  assert.equal(sent, 2, "the flushed change is not sent again");
  throttle.trigger();
  clock.advance(1);
  throttle.trigger();
  throttle.cancel();
  clock.advance(50);
  assert.equal(sent, 3);
});
