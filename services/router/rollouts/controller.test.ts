import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import test from "node:test";
import { pino } from "pino";
import { Registry } from "prom-client";
import { type RolloutSpec, RolloutState, type TrafficSplit } from "../../../gen/infermesh/router/v1/router_service.js";
import { RolloutController } from "./controller.js";
import { OutcomeWindows } from "./outcome-window.js";
import { LocalRolloutStore } from "./store.js";

const quiet = pino({ level: "silent" });

/** A controller on a clock moved by hand, with the splits it put in force. */
function harness(file?: string) {
  const clock = { ms: 1_000_000 };
  const now = () => clock.ms;
  const windows = new OutcomeWindows(now);
  const splits: TrafficSplit[] = [];
  const controller = new RolloutController({
    store: new LocalRolloutStore(file),
    windows,
    applySplit: async (split) => {
      splits.push(split);
    },
    registry: new Registry(),
    logger: quiet,
    now,
  });
  /** One second of traffic: `count` generations of `model`, `failed` of them failing, at `ttftMs`. */
  const traffic = (model: string, count: number, { failed = 0, ttftMs = 100, itlMs = 20 } = {}) =>
    windows.record([
      {
        model,
        succeeded: count - failed,
        failed,
        timeToFirstTokenMs: Array.from({ length: count - failed }, () => ttftMs),
        interTokenLatencyMs: Array.from({ length: count - failed }, () => itlMs),
      },
    ]);
  /** Moves on `seconds`, a second at a time, each with traffic as `perSecond` says, and ticks. */
  const run = async (seconds: number, perSecond: () => void) => {
    for (let second = 0; second < seconds; second += 1) {
      clock.ms += 1_000;
      perSecond();
      await controller.tick();
    }
  };
  const pick = (placed: string) => windows.notePick("canary", placed);
  const canaryShares = () => splits.map((split) => split.targets.find((target) => target.model === "canary")!.weight);
  return { clock, controller, splits, traffic, pick, run, canaryShares };
}

const spec: RolloutSpec = {
  model: "gpt-oss-20b",
  baseline: "baseline",
  canary: "canary",
  stepPercents: [],
  stepHoldMs: 10_000,
  windowMs: 5_000,
  minSamples: 20,
  slo: undefined,
};

test("a canary as good as its baseline moves 10 → 50 → 100 % a step per hold, and succeeds", async () => {
  const { controller, traffic, run, canaryShares } = harness();
  const started = await controller.set(spec);
  assert.ok(!("problem" in started));
  assert.equal(started.canaryPercent, 10);
  await run(35, () => {
    traffic("baseline", 10, { ttftMs: 100 });
    traffic("canary", 10, { ttftMs: 110 });
  });
  const [rollout] = controller.list();
  assert.equal(rollout!.state, RolloutState.ROLLOUT_STATE_SUCCEEDED);
  assert.deepEqual(canaryShares(), [10, 50, 100]);
  assert.deepEqual(
    rollout!.events.map((event) => event.kind),
    ["started", "promoted", "promoted", "succeeded"],
  );
  assert.equal(controller.drives("gpt-oss-20b"), false, "an ended rollout leaves the split to people again");
});

test("a canary that fails a tenth of its generations is rolled back in its first judged window, before the step's hold", async () => {
  const { controller, traffic, run, canaryShares, clock } = harness();
  await controller.set(spec);
  const startedAt = clock.ms;
  await run(4, () => {
    traffic("baseline", 10);
    traffic("canary", 10, { failed: 1 });
  });
  const [rollout] = controller.list();
  assert.equal(rollout!.state, RolloutState.ROLLOUT_STATE_ROLLED_BACK);
  assert.deepEqual(canaryShares(), [10, 0]);
  assert.match(rollout!.reason, /^error rate 10\.00 % > baseline 0\.00 % \+ 1\.00 %/);
  assert.ok(clock.ms - startedAt <= 5_000, "within one window");
  assert.equal(rollout!.events.at(-1)!.kind, "rolled_back");
});

test("a canary three times slower to its first token is rolled back on TTFT; a little slower is not", async () => {
  const slow = harness();
  await slow.controller.set(spec);
  await slow.run(3, () => {
    slow.traffic("baseline", 10, { ttftMs: 400 });
    slow.traffic("canary", 10, { ttftMs: 1_200 });
  });
  assert.equal(slow.controller.list()[0]!.state, RolloutState.ROLLOUT_STATE_ROLLED_BACK);
  assert.match(slow.controller.list()[0]!.reason, /^TTFT p95 1200 ms > 600 ms \(baseline 400 ms × 1\.5, and at least \+ 50 ms\)$/);

  // 40 ms slower on a 20 ms model is 3× but inside the 50 ms slack.
  const fast = harness();
  await fast.controller.set(spec);
  await fast.run(3, () => {
    fast.traffic("baseline", 10, { ttftMs: 20 });
    fast.traffic("canary", 10, { ttftMs: 60 });
  });
  assert.equal(fast.controller.list()[0]!.state, RolloutState.ROLLOUT_STATE_PROGRESSING);
});

test("a canary the router keeps passing over (its workers unhealthy or full) is rolled back though it has too few samples to judge", async () => {
  const { controller, traffic, pick, run } = harness();
  await controller.set(spec);
  await run(3, () => {
    traffic("baseline", 10);
    traffic("canary", 1, { failed: 1 });
    for (let index = 0; index < 10; index += 1) pick(index < 2 ? "canary" : "baseline");
  });
  const [rollout] = controller.list();
  assert.equal(rollout!.state, RolloutState.ROLLOUT_STATE_ROLLED_BACK);
  assert.match(rollout!.reason, /^passed over for 16 of the 20 picks its split gave it/);
});

test("a step is not promoted on too few samples, however long it held", async () => {
  const { controller, traffic, run, canaryShares } = harness();
  await controller.set(spec);
  await run(30, () => traffic("canary", 1));
  const [rollout] = controller.list();
  assert.equal(rollout!.state, RolloutState.ROLLOUT_STATE_PROGRESSING);
  assert.deepEqual(canaryShares(), [10]);
  assert.match(rollout!.lastJudgement!.verdict, /^too few samples \(5 of 20\)$/);
});

test("at 100 % the baseline takes no traffic: the canary is judged against the baseline's last figures", async () => {
  const { controller, traffic, run } = harness();
  await controller.set({ ...spec, stepPercents: [50, 100] });
  await run(11, () => {
    traffic("baseline", 10, { ttftMs: 100 });
    traffic("canary", 10, { ttftMs: 100 });
  });
  assert.equal(controller.list()[0]!.canaryPercent, 100);
  await run(3, () => traffic("canary", 10, { ttftMs: 500 }));
  const [rollout] = controller.list();
  assert.equal(rollout!.state, RolloutState.ROLLOUT_STATE_ROLLED_BACK);
  assert.match(rollout!.reason, /TTFT p95 500 ms > 150 ms \(baseline 100 ms/);
});

test("a restarted router resumes a rollout from its file at the step it was on, and puts its split in force again", async () => {
  const file = join(mkdtempSync(join(tmpdir(), "infermesh-rollouts-")), "rollouts.json");
  const before = harness(file);
  await before.controller.set(spec);
  await before.run(11, () => {
    before.traffic("baseline", 10);
    before.traffic("canary", 10);
  });
  assert.equal(before.controller.list()[0]!.canaryPercent, 50);

  const after = harness(file);
  await after.controller.start();
  await after.controller.close();
  await after.controller.tick();
  const [rollout] = after.controller.list();
  assert.equal(rollout!.state, RolloutState.ROLLOUT_STATE_PROGRESSING);
  assert.equal(rollout!.step, 1);
  assert.deepEqual(after.canaryShares(), [50]);
  assert.equal(rollout!.events.at(-1)!.kind, "resumed");
});

test("the same spec again leaves a running rollout as it is; a bad spec names its field; delete sends the canary back to 0 %", async () => {
  const { controller, canaryShares } = harness();
  const first = await controller.set(spec);
  const again = await controller.set({ ...spec });
  assert.ok(!("problem" in first) && !("problem" in again));
  assert.equal(again.id, first.id);
  assert.deepEqual(await controller.set({ ...spec, stepPercents: [50, 10] }), { problem: "spec.step_percents must ascend" });
  assert.deepEqual(await controller.set({ ...spec, canary: "baseline" }), { problem: "spec.canary must differ from spec.baseline" });
  assert.deepEqual(await controller.set({ ...spec, windowMs: 10 }), { problem: "spec.window_ms must be between 1000 and 3600000" });
  assert.equal(controller.drives("gpt-oss-20b"), true);
  const stopped = await controller.delete("gpt-oss-20b");
  assert.equal(stopped?.events.at(-1)?.kind, "stopped");
  assert.deepEqual(canaryShares(), [10, 0]);
  assert.deepEqual(controller.list(), []);
  assert.equal(await controller.delete("gpt-oss-20b"), undefined);
  // The id the gateway gave every replica it asked.
  const named = await controller.set(spec, "asked-id");
  assert.ok(!("problem" in named) && named.id === "asked-id");
});
