import assert from "node:assert/strict";
import test from "node:test";
import { openAiEngineOptionsSchema } from "./options.js";

test("defaults, a trimmed base URL, comma-separated model ids and numbers written as text", () => {
  const options = openAiEngineOptionsSchema.parse({ baseUrl: "http://127.0.0.1:8000/", modelIds: "a, b,", pollIntervalMs: "250" });
  assert.deepEqual(options, {
    baseUrl: "http://127.0.0.1:8000",
    apiKey: "",
    modelIds: ["a", "b"],
    metricsUrl: "",
    flavor: "auto",
    pollIntervalMs: 250,
    requestTimeoutMs: 30_000,
    contextTokens: 8_192,
    priorityOrder: "off",
    maxSequences: 256,
  });
});

test("rejects a base URL that is not http(s), an unknown flavor or priority order and a poll interval below 50 ms", () => {
  const bads = [
    { baseUrl: "ftp://x" },
    { baseUrl: "localhost:8000" },
    { baseUrl: "http://x", flavor: "tgi" },
    { baseUrl: "http://x", priorityOrder: "highest" },
    { baseUrl: "http://x", pollIntervalMs: 10 },
  ];
  for (const bad of bads) {
    assert.equal(openAiEngineOptionsSchema.safeParse(bad).success, false, JSON.stringify(bad));
  }
});
