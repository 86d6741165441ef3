import assert from "node:assert/strict";
import { test } from "node:test";
import { ManualClock } from "../common/clock.js";
import { LoadProgressLog } from "./load-progress.js";

test("model load progress is logged once per tenth, after a quiet spell, and at the end", () => {
  const clock = new ManualClock();
  const logged: number[] = [];
  const progress = new LoadProgressLog((fraction) => logged.push(fraction), clock, 2_000);
  for (let step = 1; step <= 250; step += 1) progress.update(step / 1000);
  assert.deepEqual(logged, [0.1, 0.2], "hundreds of callbacks, one line per tenth passed");
  clock.advance(1_999);
  progress.update(0.251);
  assert.deepEqual(logged, [0.1, 0.2], "not yet quiet for long enough");
  clock.advance(1);
  progress.update(0.252);
  assert.deepEqual(logged, [0.1, 0.2, 0.252], "a slow load still shows it moves");
  progress.update(0.252);
  progress.update(0.1);
  clock.advance(10_000);
  progress.update(0.252);
  assert.equal(logged.length, 3, "no line when nothing moved");
  progress.update(1);
  progress.update(1);
  assert.deepEqual(logged, [0.1, 0.2, 0.252, 1], "the end is logged once");
});
