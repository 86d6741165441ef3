import assert from "node:assert/strict";
import test from "node:test";
import { ConfigError } from "../common/config.js";
import { loadRouterConfig, schedulerConfig } from "./config.js";
import { defaultScorerWeights } from "./scheduling/scorers/index.js";

test("the scorers a pick runs, and their weights, come from one setting; every scorer by default", () => {
  assert.deepEqual(schedulerConfig(loadRouterConfig({ argv: [], env: {} })).scorers, defaultScorerWeights);
  const flagged = loadRouterConfig({ argv: ["--scorers", "queue=1, prefill=5"], env: {} });
  assert.deepEqual(flagged.scorers, { queue: 1, prefill: 5 });
  const fromEnv = loadRouterConfig({ argv: [], env: { INFERMESH_ROUTER_SCORERS: "kv=2" } });
  assert.deepEqual(fromEnv.scorers, { kv: 2 });
});

test("an unknown scorer or a bad weight is refused by name", () => {
  assert.throws(
    () => loadRouterConfig({ argv: ["--scorers", "queue=1,latency=2"], env: {} }),
    (error: unknown) => error instanceof ConfigError && /unknown scorer "latency"; known: queue, kv/.test(error.message),
  );
  assert.throws(() => loadRouterConfig({ argv: ["--scorers", "queue=lots"], env: {} }), ConfigError);
  assert.throws(() => loadRouterConfig({ argv: ["--scorers", ""], env: {} }), ConfigError);
});
