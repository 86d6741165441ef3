import assert from "node:assert/strict";
import test from "node:test";
import { redact } from "./debug-info.js";

test("redact replaces every secret of a config and keeps everything else", () => {
  const config = {
    port: 8000,
    auth: "required",
    apiKeys: [
      { name: "web", key: "sk-secret-value-0001", tenant: "acme", limits: { tokensPerMinute: 1_000 } },
      { name: "ops", keySha256: "ab".repeat(32), tenant: "ops", admin: true },
    ],
    upstreamApiKey: "sk-upstream",
    upstreamUrl: "http://vllm:8000",
    redisUrl: "redis://default:hunter2@redis:6379/0",
    responseCache: true,
  };
  assert.deepEqual(redact(config), {
    port: 8000,
    auth: "required",
    apiKeys: [
      { name: "web", key: "[redacted]", tenant: "acme", limits: { tokensPerMinute: 1_000 } },
      { name: "ops", keySha256: "[redacted]", tenant: "ops", admin: true },
    ],
    upstreamApiKey: "[redacted]",
    upstreamUrl: "http://vllm:8000",
    redisUrl: "redis://[redacted]@redis:6379/0",
    responseCache: true,
  });
  assert.doesNotMatch(JSON.stringify(redact(config)), /sk-secret|sk-upstream|abab|hunter2/);
});
