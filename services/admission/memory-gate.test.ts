import assert from "node:assert/strict";
import test from "node:test";
import { PressureLevel } from "../../gen/infermesh/common/v1/common.js";
import type { WatchResponse } from "../../gen/infermesh/memory/v1/memory_service.js";
import { ManualClock } from "../common/clock.js";
import { MemoryGate } from "./memory-gate.js";

const { PRESSURE_LEVEL_NORMAL: NORMAL, PRESSURE_LEVEL_WARN: WARN, PRESSURE_LEVEL_CRITICAL: CRITICAL } = PressureLevel;

/** A snapshot of devices given as [used, total, level]. */
function snapshot(...devices: [number, number, PressureLevel][]): WatchResponse {
  return {
    devices: devices.map(([kvUsedTokens, kvTotalTokens, level], index) => ({
      workerId: `w${index}`,
      device: "cuda:0",
      kvUsedTokens,
      kvTotalTokens,
      level,
    })),
    maxLevel: devices.reduce((max, [, , level]) => Math.max(max, level), NORMAL),
    fleetFreeTokens: devices.reduce((sum, [used, total]) => sum + total - used, 0),
  };
}

function setup(options: { staleMs?: number; batchHeadroomRatio?: number } = {}) {
  const clock = new ManualClock();
  const logs: { level: string; message: string }[] = [];
  const logger = {
    info: (_fields: object, message: string) => void logs.push({ level: "info", message }),
    warn: (_fields: object, message: string) => void logs.push({ level: "warn", message }),
  };
  const gate = new MemoryGate(
    clock,
    { staleMs: options.staleMs ?? 10_000, batchHeadroomRatio: options.batchHeadroomRatio ?? 0.15 },
    logger as never,
  );
  let changes = 0;
  gate.onChange(() => (changes += 1));
  return { clock, gate, logs, changes: () => changes };
}

test("before any snapshot the gate is open and counts nothing", () => {
  const { gate } = setup();
  assert.equal(gate.active, false);
  assert.equal(gate.admits(1_000_000, false), true);
  assert.equal(gate.admits(1_000_000, true), true);
  gate.reserve(1_000);
  assert.deepEqual(gate.state(), { active: false, freeTokens: 0, totalTokens: 0, maxLevel: PressureLevel.PRESSURE_LEVEL_UNSPECIFIED });
});

test("a request fits the free KV of devices below CRITICAL, less what was granted since the snapshot", () => {
  const { gate, changes } = setup();
  gate.update(snapshot([200, 1_000, NORMAL], [960, 1_000, CRITICAL]));
  assert.equal(changes(), 1);
  assert.deepEqual(gate.state(), { active: true, freeTokens: 800, totalTokens: 2_000, maxLevel: CRITICAL });
  assert.equal(gate.admits(800, false), true);
  assert.equal(gate.admits(801, false), false, "the critical device's 40 free cells do not count");

  const unreserve = gate.reserve(500);
  assert.equal(gate.admits(300, false), true);
  assert.equal(gate.admits(301, false), false);
  unreserve();
  unreserve();
  assert.equal(gate.admits(800, false), true, "a grant released before the next snapshot is taken off, once");

  const counted = gate.reserve(500);
  gate.update(snapshot([700, 1_000, NORMAL], [960, 1_000, CRITICAL])); // the worker reported it
  assert.equal(gate.admits(300, false), true, "the new snapshot counts it; granted-since starts afresh");
  assert.equal(gate.admits(301, false), false);
  counted();
  assert.equal(gate.admits(301, false), false, "releasing it does not take it off the new snapshot's numbers");
});

test("batch must leave the headroom free; a request larger than the whole fleet skips the gate", () => {
  const { gate } = setup({ batchHeadroomRatio: 0.15 });
  gate.update(snapshot([600, 1_000, NORMAL]));
  assert.equal(gate.admits(250, true), true, "leaves 150 of 1,000");
  assert.equal(gate.admits(251, true), false);
  assert.equal(gate.admits(400, false), true, "other classes may use it all");
  gate.update(snapshot([1_000, 1_000, CRITICAL]));
  assert.equal(gate.admits(1, false), false);
  assert.equal(gate.admits(1_001, false), true, "it could never fit: the worker refuses it precisely");
  gate.update(snapshot([0, 1_000, NORMAL]));
  gate.reserve(1_001);
  assert.equal(gate.admits(1_000, false), true, "nor is it counted against the others");
});

test("batch is shed while any device is at WARN or above", () => {
  const { gate } = setup();
  gate.update(snapshot([0, 1_000, NORMAL], [860, 1_000, WARN]));
  assert.equal(gate.shedsBatch, true);
  gate.update(snapshot([0, 1_000, NORMAL], [800, 1_000, NORMAL]));
  assert.equal(gate.shedsBatch, false);
});

test("fail-safe: with the stream down the last snapshot holds for staleMs, then memory is ignored until one comes again", () => {
  const { clock, gate, logs, changes } = setup({ staleMs: 10_000 });
  gate.update(snapshot([900, 1_000, WARN]));
  gate.disconnected();
  clock.advance(9_999);
  assert.equal(gate.active, true, "still in force");
  assert.equal(gate.admits(200, false), false);
  assert.equal(gate.shedsBatch, true);
  assert.equal(logs.length, 0);

  clock.advance(1);
  assert.equal(gate.active, false);
  assert.equal(gate.admits(200, false), true, "the concurrency cap alone gates");
  assert.equal(gate.shedsBatch, false);
  assert.equal(changes(), 2, "the scheduler is told, so that held requests are granted");
  assert.deepEqual(
    logs.map((entry) => entry.level),
    ["warn"],
  );
  gate.disconnected(); // reconnect attempts keep failing
  clock.advance(60_000);
  assert.equal(logs.length, 1, "warned once");

  gate.update(snapshot([900, 1_000, WARN]));
  assert.equal(gate.active, true);
  assert.equal(gate.admits(200, false), false);
  assert.deepEqual(
    logs.map((entry) => entry.level),
    ["warn", "info"],
  );
});

test("a stream that comes back within staleMs keeps the gate active throughout", () => {
  const { clock, gate, logs } = setup({ staleMs: 1_000 });
  gate.update(snapshot([0, 1_000, NORMAL]));
  gate.disconnected();
  clock.advance(500);
  gate.update(snapshot([0, 1_000, NORMAL]));
  clock.advance(5_000);
  assert.equal(gate.active, true);
  assert.equal(logs.length, 0);
});
