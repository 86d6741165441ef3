import assert from "node:assert/strict";
import test from "node:test";
import { ServingState } from "../../gen/infermesh/common/v1/common.js";
import { LoadReport } from "../../gen/infermesh/router/v1/router_service.js";
import { ManualClock } from "../common/clock.js";
import { Fleet } from "./fleet.js";
import { LoadIndex } from "./load-index.js";

function fleetOf(count: number) {
  const fleet = new Fleet(new ManualClock(), { staleAfterMs: 5_000, freshReportMs: 1_000, pickExpireMs: 1_000 });
  const join = (workerId: string, models = ["m"]) =>
    fleet.join({
      workerId,
      address: `${workerId}:1`,
      models: models.map((id) => ({ id, engine: "sim", contextTokens: 4_096, description: "" })),
      device: "cpu",
      maxSequences: 64,
      state: ServingState.SERVING_STATE_SERVING,
      sendsKvEvents: false,
      tensorParallelSize: 1,
    });
  const members = Array.from({ length: count }, (_, index) => join(`w${index}`));
  const report = (index: number, running: number) =>
    fleet.report(members[index]!, LoadReport.create({ runningRequests: running, state: ServingState.SERVING_STATE_SERVING }));
  return { fleet, members, join, report };
}

/** The workers of model `model` in the order a walk meets them (within a bucket, from a fixed start). */
const order = (fleet: Fleet, model = "m", to = LoadIndex.buckets) => {
  const seen: string[] = [];
  fleet.byLoad.walk(
    model,
    0,
    to,
    () => 0,
    (member) => {
      seen.push(member.registration.workerId);
      return true;
    },
  );
  return seen;
};

test("the load index follows reports and picks: a walk meets the least loaded first", () => {
  const { fleet, members, report } = fleetOf(3);
  report(0, 40);
  report(1, 10);
  report(2, 30);
  assert.deepEqual(order(fleet), ["w1", "w2", "w0"]);
  // Picks count as load until a report lists them: 25 picks move w1 past w2.
  for (let pick = 0; pick < 25; pick += 1) fleet.notePick(members[1]!, `r${pick}`, 100);
  assert.deepEqual(order(fleet), ["w2", "w1", "w0"]);
  report(0, 0);
  assert.deepEqual(order(fleet), ["w0", "w2", "w1"]);
  assert.deepEqual(fleet.byLoad.meanRequests("m"), { total: 0 + 35 + 30, members: 3 });
});

test("saturated workers sit above every unsaturated one, and a walk can stop early", () => {
  const { fleet, report } = fleetOf(3);
  report(0, 64 * 3);
  report(1, 63);
  report(2, 64);
  assert.deepEqual(order(fleet, "m", LoadIndex.saturatedFrom), ["w1"]);
  assert.deepEqual(order(fleet), ["w1", "w2", "w0"]);
  const first: string[] = [];
  fleet.byLoad.walk("m", 0, LoadIndex.buckets, Math.random, (member) => {
    first.push(member.registration.workerId);
    return false;
  });
  assert.deepEqual(first, ["w1"]);
});

test("leaving, reconnecting and changing models keep the index exact", () => {
  const { fleet, members, join, report } = fleetOf(3);
  report(0, 5);
  assert.ok(fleet.leave("w1", members[1]!.connectionId));
  assert.deepEqual(order(fleet).sort(), ["w0", "w2"]);
  // A reconnect replaces its entry: one w2, at its new load; a late report on the old stream moves nothing.
  const again = join("w2");
  fleet.report(again, LoadReport.create({ runningRequests: 50, state: ServingState.SERVING_STATE_SERVING }));
  fleet.report(members[2]!, LoadReport.create({ runningRequests: 1, state: ServingState.SERVING_STATE_SERVING }));
  assert.deepEqual(order(fleet), ["w0", "w2"]);
  // A new member reuses the index w1 left, and the index tells them apart.
  join("w3");
  assert.deepEqual(order(fleet), ["w3", "w0", "w2"]);
  fleet.setModels(again, [{ id: "other", engine: "sim", contextTokens: 4_096, description: "" }]);
  assert.deepEqual(order(fleet), ["w3", "w0"]);
  assert.deepEqual(order(fleet, "other"), ["w2"]);
  assert.deepEqual(fleet.byLoad.meanRequests("m"), { total: 5, members: 2 });
});

test("within a bucket a walk starts at a random place, so equal workers share the picks", () => {
  const { fleet } = fleetOf(8);
  const firsts = new Set<string>();
  for (let walk = 0; walk < 200; walk += 1) {
    fleet.byLoad.walk("m", 0, LoadIndex.buckets, Math.random, (member) => {
      firsts.add(member.registration.workerId);
      return false;
    });
  }
  assert.equal(firsts.size, 8);
});
