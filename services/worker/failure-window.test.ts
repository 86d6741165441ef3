import test from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../common/clock.js";
import { FailureWindow } from "./failure-window.js";

test("the failure ratio is over the outcomes of the window, and old ones age out", () => {
  const clock = new ManualClock();
  const window = new FailureWindow(60_000, 256, clock);
  assert.equal(window.ratio(), 0);
  for (let index = 0; index < 6; index += 1) window.record(false);
  for (let index = 0; index < 4; index += 1) window.record(true);
  assert.equal(window.ratio(), 0.4);
  clock.advance(30_000);
  for (let index = 0; index < 10; index += 1) window.record(false);
  assert.equal(window.ratio(), 0.2);
  clock.advance(30_001);
  assert.equal(window.ratio(), 0, "the failures aged out");
});

test("only the newest outcomes count past the capacity", () => {
  const window = new FailureWindow(60_000, 4, new ManualClock());
  for (const failed of [true, true, false, false, false, false]) window.record(failed);
  assert.equal(window.ratio(), 0);
});
