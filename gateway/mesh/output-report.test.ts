import assert from "node:assert/strict";
import test from "node:test";
import { ManualClock } from "../../services/common/clock.js";
import { OutputReport } from "./output-report.js";

function setup() {
  const clock = new ManualClock();
  const sent: number[] = [];
  return { clock, sent, report: new OutputReport({ reportOutputTokens: (tokens) => sent.push(tokens) }, clock) };
}

test("output is reported at the first delta, then at most once a second with the latest total", () => {
  const { clock, sent, report } = setup();
  report.add(3);
  assert.deepEqual(sent, [3], "the first delta at once");
  for (let step = 0; step < 9; step += 1) {
    clock.advance(100);
    report.add(2);
  }
  assert.deepEqual(sent, [3], "nine deltas within the second: none yet");
  clock.advance(100);
  assert.deepEqual(sent, [3, 21], "one report, cumulative");
  clock.advance(5_000);
  assert.deepEqual(sent, [3, 21], "nothing new, nothing sent");
});

test("the final report carries the worker's own total and goes out at once; nothing follows it", () => {
  const { clock, sent, report } = setup();
  report.add(1);
  clock.advance(200);
  report.add(1);
  report.finish(7);
  assert.deepEqual(sent, [1, 7]);
  clock.advance(5_000);
  assert.deepEqual(sent, [1, 7], "the pending throttled report was dropped");
  report.finish();
  assert.deepEqual(sent, [1, 7], "a total already sent is not sent again");
});

test("a generation with no output reports nothing", () => {
  const { sent, report } = setup();
  report.add(0);
  report.finish();
  assert.deepEqual(sent, []);
});
