import test from "node:test";
import assert from "node:assert/strict";
import { PressureLevel, ServingState } from "../../gen/infermesh/common/v1/common.js";
import { LoadReport, type Register } from "../../gen/infermesh/router/v1/router_service.js";
import { ManualClock } from "../common/clock.js";
import { Fleet } from "./fleet.js";

const { SERVING_STATE_SERVING: SERVING, SERVING_STATE_LOADING: LOADING, SERVING_STATE_DRAINING: DRAINING } = ServingState;

function registration(workerId: string, models = ["m1"], state = SERVING): Register {
  return {
    workerId,
    address: `127.0.0.1:${7000 + workerId.length}`,
    models: models.map((id) => ({ id, engine: "sim", contextTokens: 4096, description: "" })),
    device: "cpu",
    maxSequences: 4,
    state,
    sendsKvEvents: false,
    tensorParallelSize: 1,
  };
}

function load(state = SERVING, runningRequests = 0): LoadReport {
  return LoadReport.create({ runningRequests, state });
}

function setup(staleAfterMs = 5_000) {
  const clock = new ManualClock();
  return { clock, fleet: new Fleet(clock, { staleAfterMs, freshReportMs: 1_000, pickExpireMs: 1_000 }) };
}

const ids = (fleet: Fleet, model = "m1") =>
  fleet
    .eligible(model)
    .map((member) => member.registration.workerId)
    .sort();

test("eligible() takes only SERVING workers of the model", () => {
  const { fleet } = setup();
  fleet.join(registration("a"));
  fleet.join(registration("loading", ["m1"], LOADING));
  fleet.join(registration("other-model", ["m2"]));
  fleet.join(registration("both", ["m2", "m1"]));
  const draining = fleet.join(registration("draining"));
  fleet.report(draining, load(DRAINING));
  assert.deepEqual(ids(fleet), ["a", "both"]);
  assert.deepEqual(ids(fleet, "m2"), ["both", "other-model"]);
  assert.deepEqual(ids(fleet, "m3"), []);
});

test("a worker that reports SERVING after loading becomes eligible", () => {
  const { fleet } = setup();
  const member = fleet.join(registration("a", ["m1"], LOADING));
  assert.deepEqual(ids(fleet), []);
  fleet.report(member, load(SERVING));
  assert.deepEqual(ids(fleet), ["a"]);
});

test("eligible() excludes workers under CRITICAL pressure, not WARN", () => {
  const { fleet } = setup();
  fleet.join(registration("a"));
  fleet.join(registration("b"));
  fleet.setPressure("a", PressureLevel.PRESSURE_LEVEL_CRITICAL);
  fleet.setPressure("b", PressureLevel.PRESSURE_LEVEL_WARN);
  assert.deepEqual(ids(fleet), ["b"]);
  fleet.setPressure("a", PressureLevel.PRESSURE_LEVEL_NORMAL);
  assert.deepEqual(ids(fleet), ["a", "b"]);
});

test("a worker with no report for longer than staleAfterMs is not eligible until it reports", () => {
  const { clock, fleet } = setup(5_000);
  const member = fleet.join(registration("a"));
  clock.advance(5_000);
  assert.deepEqual(ids(fleet), ["a"]);
  clock.advance(1);
  assert.deepEqual(ids(fleet), []);
  assert.equal(fleet.list()[0]?.reportAgeMs, 5_001);
  fleet.report(member, load());
  assert.deepEqual(ids(fleet), ["a"]);
});

test("leave() with an old connectionId does not remove a re-joined worker", () => {
  const { fleet } = setup();
  const old = fleet.join(registration("a"));
  fleet.setPressure("a", PressureLevel.PRESSURE_LEVEL_CRITICAL);
  const rejoined = fleet.join(registration("a"));
  assert.notEqual(rejoined.connectionId, old.connectionId);
  assert.equal(rejoined.pressure, PressureLevel.PRESSURE_LEVEL_CRITICAL); // last known pressure is kept

  assert.equal(fleet.leave("a", old.connectionId), false);
  assert.equal(fleet.list().length, 1);
  assert.equal(fleet.leave("a", rejoined.connectionId), true);
  assert.equal(fleet.list().length, 0);
});

test("a load report clears the picks whose requests it lists as arrived; a pick never listed expires", () => {
  const { clock, fleet } = setup();
  const member = fleet.join(registration("a"));
  fleet.notePick(member, "first", 100, 80);
  clock.advance(20);
  fleet.notePick(member, "second", 50, 40);
  clock.advance(5);
  assert.equal(fleet.list()[0]?.inFlightPicks, 2);
  assert.deepEqual([member.inFlightTokens, member.inFlightPrefill], [150, 120]);
  // The report's load includes "first" (it arrived), not "second" (still on its way).
  fleet.report(member, { ...load(SERVING, 1), arrivedRequestIds: ["first"] });
  assert.equal(member.inFlightPicks, 1);
  assert.deepEqual([member.inFlightTokens, member.inFlightPrefill], [50, 40]);
  assert.equal(fleet.list()[0]?.load?.runningRequests, 1);
  clock.advance(500);
  fleet.report(member, load(SERVING, 1));
  assert.equal(member.inFlightPicks, 1, "a report that does not list it keeps it, however late");
  clock.advance(500);
  fleet.report(member, load(SERVING, 1));
  assert.equal(member.inFlightPicks, 0, "after pickExpireMs it went elsewhere, or nowhere");
  assert.equal(member.inFlightTokens, 0);
});

test("health is 1 while reports are fresh, falls towards 0.5 as they go stale, and loses a fifth at WARN", () => {
  const { clock, fleet } = setup(5_000);
  const member = fleet.join(registration("a"));
  assert.equal(fleet.health(member), 1);
  clock.advance(1_000);
  assert.equal(fleet.health(member), 1);
  clock.advance(2_000); // halfway from fresh (1 s) to stale (5 s)
  assert.equal(fleet.health(member), 0.75);
  clock.advance(2_000);
  assert.equal(fleet.health(member), 0.5);
  fleet.report(member, load());
  fleet.setPressure("a", PressureLevel.PRESSURE_LEVEL_WARN);
  assert.equal(fleet.health(member), 0.8);
});

test("hasEverServed() remembers models of workers that have left", () => {
  const { fleet } = setup();
  assert.equal(fleet.hasEverServed("m1"), false);
  const member = fleet.join(registration("a", ["m1", "m2"], LOADING));
  fleet.leave("a", member.connectionId);
  assert.equal(fleet.hasEverServed("m1"), true);
  assert.equal(fleet.hasEverServed("m2"), true);
  assert.equal(fleet.hasEverServed("m3"), false);
  assert.deepEqual(ids(fleet), []);
});
