import { test } from "node:test";
import assert from "node:assert/strict";
import { simOptionsSchema, simPresets } from "./sim-options.js";

test("no settings give the gpt-oss-20b-on-H100 preset under a model id that says it is simulated", () => {
  const options = simOptionsSchema.parse({});
  assert.equal(options.modelId, "sim-gpt-oss-20b");
  assert.equal(options.device, "sim:h100");
  assert.equal(options.kvCapacityTokens, simPresets["h100-gpt-oss-20b"].kvCapacityTokens);
  assert.equal(options.timeScale, 1);
  assert.match(options.description, /synthetic/);
  assert.ok(Object.isFrozen(options));
});

test("a preset's figures can be overridden one by one, from numbers or from environment text", () => {
  const options = simOptionsSchema.parse({ preset: "h100-gpt-oss-120b", modelId: "gpt-oss-120b", timeScale: "0.1", maxBatch: "64" });
  assert.equal(options.modelId, "gpt-oss-120b");
  assert.equal(options.timeScale, 0.1);
  assert.equal(options.maxBatch, 64);
  assert.equal(options.decodeExpertReadMs, simPresets["h100-gpt-oss-120b"].decodeExpertReadMs);
});

test("settings that cannot work are refused, naming the setting", () => {
  const issues = (input: unknown) => simOptionsSchema.safeParse(input).error?.issues.map((issue) => issue.path.join(".")) ?? [];
  assert.deepEqual(issues({ contextTokens: 4096, kvCapacityTokens: 2048 }), ["kvCapacityTokens"]);
  assert.deepEqual(issues({ maxBatch: 64, maxBatchTokens: 32 }), ["maxBatchTokens"]);
  assert.deepEqual(issues({ preset: "a100-llama" }), ["preset"]);
  assert.deepEqual(issues({ timeScale: -1 }), ["timeScale"]);
});
