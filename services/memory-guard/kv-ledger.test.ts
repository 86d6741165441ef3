import test from "node:test";
import assert from "node:assert/strict";
import { PressureLevel } from "../../gen/infermesh/common/v1/common.js";
import { KvLedger } from "./kv-ledger.js";

const { PRESSURE_LEVEL_NORMAL: NORMAL, PRESSURE_LEVEL_WARN: WARN, PRESSURE_LEVEL_CRITICAL: CRITICAL } = PressureLevel;

const ledger = () => new KvLedger({ warnRatio: 0.8, criticalRatio: 0.95 });
const usage = (device: string, usedTokens: number, totalTokens: number, idleSequences = 0, reservedTokens = 0) => ({
  device,
  usedTokens,
  totalTokens,
  idleSequences,
  reservedTokens,
});

test("levels change at the configured warn and critical ratios", () => {
  const kv = ledger();
  const levelAt = (used: number) => (kv.report("w1", usage("cuda:0", used, 1_000, 0)), kv.levelOf("w1"));
  assert.equal(levelAt(799), NORMAL);
  assert.equal(levelAt(800), WARN);
  assert.equal(levelAt(949), WARN);
  assert.equal(levelAt(950), CRITICAL);
  assert.equal(levelAt(10), NORMAL);
});

test("unknown devices and devices with no capacity are NORMAL", () => {
  const kv = ledger();
  assert.equal(kv.levelOf("nobody"), NORMAL);
  kv.report("w1", usage("cpu", 50, 0, 0));
  assert.equal(kv.levelOf("w1"), NORMAL);
});

test("usage is the larger of the tokens held and the tokens reserved by running generations", () => {
  const kv = ledger();
  kv.report("w1", usage("cuda:0", 300, 1_000, 0, 500));
  assert.equal(kv.usedTokens("w1"), 500);
  kv.report("w1", usage("cuda:0", 300, 1_000, 0, 850));
  assert.equal(kv.usedTokens("w1"), 850);
  assert.equal(kv.levelOf("w1"), WARN);
  kv.report("w1", usage("cuda:0", 300, 1_000, 0, 0));
  assert.equal(kv.usedTokens("w1"), 300);
  assert.equal(kv.levelOf("w1"), NORMAL);
  kv.report("w1", usage("cuda:0", 960, 1_000, 0, 100));
  assert.equal(kv.usedTokens("w1"), 960);
  assert.equal(kv.levelOf("w1"), CRITICAL);
});

test("remove() drops the device", () => {
  const kv = ledger();
  kv.report("w1", usage("cuda:0", 990, 1_000, 0));
  kv.report("w2", usage("cuda:1", 10, 1_000, 0));
  kv.remove("w1");
  assert.equal(kv.levelOf("w1"), NORMAL);
  assert.equal(kv.usedTokens("w1"), 0);
  assert.equal(kv.totalTokens("w1"), 0);
  assert.deepEqual(
    kv.snapshot().devices.map((device) => device.workerId),
    ["w2"],
  );
});

test("snapshot() lists devices with fleet free tokens and the worst level", () => {
  const kv = ledger();
  assert.deepEqual(kv.snapshot(), { devices: [], maxLevel: NORMAL, fleetFreeTokens: 0 });
  kv.report("w1", usage("cuda:0", 100, 1_000, 0, 400));
  kv.report("w2", usage("cuda:1", 850, 1_000, 2));
  assert.deepEqual(kv.snapshot(), {
    devices: [
      { workerId: "w1", device: "cuda:0", kvUsedTokens: 400, kvTotalTokens: 1_000, level: NORMAL },
      { workerId: "w2", device: "cuda:1", kvUsedTokens: 850, kvTotalTokens: 1_000, level: WARN },
    ],
    maxLevel: WARN,
    fleetFreeTokens: 600 + 150,
  });
  kv.report("w1", usage("cuda:0", 999, 1_000, 0));
  assert.equal(kv.snapshot().maxLevel, CRITICAL);
});

test("fleet free tokens never count an over-full device as negative", () => {
  const kv = ledger();
  kv.report("w1", usage("cuda:0", 0, 100, 0, 500));
  kv.report("w2", usage("cuda:1", 0, 100, 0));
  assert.equal(kv.snapshot().fleetFreeTokens, 100);
});

test("onChange listeners fire on report and remove until unsubscribed", () => {
  const kv = ledger();
  let calls = 0;
  const unsubscribe = kv.onChange(() => calls++);
  kv.report("w1", usage("cuda:0", 10, 100, 0));
  kv.report("w1", usage("cuda:0", 10, 100, 0, 20));
  kv.remove("w1");
  kv.remove("w1"); // nothing changed
  assert.equal(calls, 3);
  unsubscribe();
  kv.report("w1", usage("cuda:0", 10, 100, 0));
  assert.equal(calls, 3);
});

test("excessOverWarn is the tokens to free to get below the warn threshold", () => {
  const kv = ledger();
  assert.equal(kv.excessOverWarn("nobody"), 0);
  kv.report("w1", usage("cuda:0", 700, 1_000, 0));
  assert.equal(kv.excessOverWarn("w1"), 0);
  kv.report("w1", usage("cuda:0", 900, 1_000, 0));
  assert.equal(kv.excessOverWarn("w1"), 101);
  kv.report("w1", usage("cuda:0", 900, 1_000, 0, 970));
  assert.equal(kv.excessOverWarn("w1"), 171);
});

test("freeing excessOverWarn tokens brings a WARN device back to NORMAL", () => {
  const kv = ledger();
  kv.report("w1", usage("cuda:0", 900, 1_000, 1));
  const excess = kv.excessOverWarn("w1");
  kv.report("w1", usage("cuda:0", 900 - excess, 1_000, 1));
  assert.equal(kv.levelOf("w1"), NORMAL);
});

test("new levels (a reload) put every device at its new level at once, and watchers hear of it", () => {
  const kv = ledger();
  kv.report("w1", usage("cuda:0", 900, 1_000));
  assert.equal(kv.levelOf("w1"), WARN);
  let changes = 0;
  kv.onChange(() => {
    changes += 1;
  });
  kv.setThresholds({ warnRatio: 0.95, criticalRatio: 0.99 });
  assert.equal(kv.levelOf("w1"), NORMAL);
  kv.setThresholds({ warnRatio: 0.5, criticalRatio: 0.85 });
  assert.equal(kv.levelOf("w1"), CRITICAL);
  assert.equal(changes, 2);
});
