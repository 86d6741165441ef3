import test from "node:test";
import assert from "node:assert/strict";
import { PressureLevel, ServingState } from "../../gen/infermesh/common/v1/common.js";
import type { FleetMember } from "./fleet.js";
import { rankByLoad } from "./least-loaded.js";

function member(workerId: string, maxSequences: number, running: number, waiting = 0, inFlightPicks = 0): FleetMember {
  const state = ServingState.SERVING_STATE_SERVING;
  return {
    registration: { workerId, address: "", models: [], device: "cpu", maxSequences, state, sendsKvEvents: false },
    connectionId: 1,
    load: { runningRequests: running, waitingRequests: waiting, kvUsedTokens: 0, kvTotalTokens: 0, tokensPerSecond: 0, prefixCacheQueries: 0, prefixCacheHits: 0, state },
    lastReportAtMs: 0,
    inFlightPicks,
    pressure: PressureLevel.PRESSURE_LEVEL_NORMAL,
  };
}

const order = (members: FleetMember[], random?: () => number) =>
  rankByLoad(members, random).map((ranked) => ranked.member.registration.workerId);

/** A `random` that returns the given values in turn. */
const sequence = (...values: number[]) => () => values.shift() ?? 0;

test("ranks by (running + waiting + inFlightPicks) / maxSequences, least loaded first", () => {
  const members = [
    member("busy", 4, 4), // 1.0
    member("picked", 4, 0, 0, 3), // 0.75
    member("idle", 4, 0), // 0
    member("big", 16, 4, 4), // 0.5
    member("queued", 2, 0, 3), // 1.5
  ];
  assert.deepEqual(order(members), ["idle", "big", "picked", "busy", "queued"]);
});

test("scores are in (0, 1], 1 for an idle worker and higher for less load", () => {
  const ranked = rankByLoad([member("idle", 4, 0), member("half", 4, 2), member("full", 4, 4)]);
  assert.deepEqual(
    ranked.map((entry) => entry.score),
    [1, 1 / 1.5, 1 / 2],
  );
});

test("a worker reporting maxSequences 0 is treated as one sequence", () => {
  assert.deepEqual(order([member("zero", 0, 1), member("two", 2, 1)]), ["two", "zero"]);
  assert.equal(rankByLoad([member("zero", 0, 1)])[0]?.score, 0.5);
});

test("ties are broken by the random function, so both orders happen", () => {
  const tied = () => [member("a", 4, 1), member("b", 8, 2)];
  assert.deepEqual(order(tied(), sequence(0.9, 0.1)), ["b", "a"]);
  assert.deepEqual(order(tied(), sequence(0.1, 0.9)), ["a", "b"]);
});

test("randomness never outranks load", () => {
  assert.deepEqual(order([member("loaded", 4, 3), member("idle", 4, 0)], sequence(0, 0.99)), ["idle", "loaded"]);
});

test("an empty fleet ranks to nothing", () => {
  assert.deepEqual(rankByLoad([]), []);
});
