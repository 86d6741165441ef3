import test from "node:test";
import assert from "node:assert/strict";
import { TrafficSplits } from "./traffic-split.js";

const sessions = Array.from({ length: 2_000 }, (_, index) => `user-${index}`);
const canaryShare = (splits: TrafficSplits) =>
  sessions.filter((session) => splits.route("m", session)![0] === "m-canary").length / sessions.length;

test("a split sends about its weight's share of sessions to each version", () => {
  const splits = new TrafficSplits();
  assert.equal(
    splits.set({
      model: "m",
      targets: [
        { model: "m", weight: 90 },
        { model: "m-canary", weight: 10 },
      ],
    }),
    undefined,
  );
  const share = canaryShare(splits);
  assert.ok(share > 0.07 && share < 0.13, `canary share ${share}`);
  assert.equal(splits.route("other", "user-1"), undefined, "a model without a split is left alone");
});

test("a session keeps its version, and as the canary ramps 10 → 50 → 100 % sessions only move to it", () => {
  const splits = new TrafficSplits();
  const onCanary = (weight: number) => {
    splits.set({
      model: "m",
      targets: [
        { model: "m", weight: 100 - weight },
        { model: "m-canary", weight },
      ],
    });
    return new Set(sessions.filter((session) => splits.route("m", session)![0] === "m-canary"));
  };
  const at10 = onCanary(10);
  assert.deepEqual(onCanary(10), at10, "the same sessions every time");
  const at50 = onCanary(50);
  const at100 = onCanary(100);
  for (const session of at10) assert.ok(at50.has(session), `${session} went back to the stable version at 50 %`);
  for (const session of at50) assert.ok(at100.has(session));
  assert.ok(at50.size > 850 && at50.size < 1_150, `about half at 50 %: ${at50.size}`);
  assert.equal(at100.size, sessions.length);
});

test("the other versions follow as fallbacks, heaviest first; a request without a session draws at random", () => {
  let draw = 0.95;
  const splits = new TrafficSplits(() => draw);
  splits.set({
    model: "m",
    targets: [
      { model: "a", weight: 50 },
      { model: "b", weight: 20 },
      { model: "c", weight: 30 },
    ],
  });
  assert.deepEqual(splits.route("m", ""), ["c", "a", "b"]);
  draw = 0.1;
  assert.deepEqual(splits.route("m", ""), ["a", "c", "b"]);
});

test("bad splits are refused with the reason; no targets removes a split", () => {
  const splits = new TrafficSplits();
  assert.match(splits.set({ model: "", targets: [] })!, /model/);
  assert.match(splits.set({ model: "m", targets: [{ model: "a", weight: 0 }] })!, /positive weight/);
  assert.match(
    splits.set({
      model: "m",
      targets: [
        { model: "a", weight: 1 },
        { model: "a", weight: 2 },
      ],
    })!,
    /twice/,
  );
  splits.set({ model: "m", targets: [{ model: "a", weight: 1 }] });
  assert.deepEqual(splits.list(), [{ model: "m", targets: [{ model: "a", weight: 1 }] }]);
  splits.set({ model: "m", targets: [] });
  assert.deepEqual(splits.list(), []);
});
