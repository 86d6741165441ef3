/**
 * Configuration that reloads without a restart, on a live mesh: the gateway's config
 * file gains an API key while a stream runs, the key works within the file's poll, the
 * stream runs to its end, and the gateway is the same process; a bad file keeps the
 * running config and says why; admission's limits change on SIGHUP.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { stringify } from "yaml";
import { metricValue, startTestMesh, type TestMesh, waitFor } from "../support/harness.js";

const adminKey = "sk-admin-000000000000000000001";
const firstKey = "sk-first-000000000000000000001";
const addedKey = "sk-added-000000000000000000001";
let mesh: TestMesh;
let gatewayFile: string;
let admissionFile: string;

const gatewayConfig = (keys: { name: string; key: string; admin?: boolean }[], extra: Record<string, unknown> = {}) =>
  stringify({ auth: "required", apiKeys: keys.map((key) => ({ tenant: key.name, ...key })), ...extra });
const startingKeys = [
  { name: "admin", key: adminKey, admin: true },
  { name: "first", key: firstKey },
];

before(async () => {
  const directory = mkdtempSync(join(tmpdir(), "infermesh-reload-"));
  gatewayFile = join(directory, "gateway.yaml");
  admissionFile = join(directory, "admission.yaml");
  writeFileSync(gatewayFile, gatewayConfig(startingKeys));
  writeFileSync(admissionFile, stringify({ maxConcurrency: 16 }));
  mesh = await startTestMesh({
    // Answers of 120 tokens at ten times an H100's pace: a stream of a few seconds.
    workerArgs: ["--engine", "sim", "--sim-time-scale", "10", "--sim-answer-tokens-min", "120", "--sim-answer-tokens-max", "120"],
    gatewayArgs: ["--config", gatewayFile],
    admissionArgs: ["--config", admissionFile],
  });
});

after(() => mesh?.stop());

const models = (key: string) => fetch(`${mesh.baseUrl}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
const adminConfig = async () =>
  (await (await fetch(`${mesh.baseUrl}/admin/config`, { headers: { authorization: `Bearer ${adminKey}` } })).json()) as {
    data: { service: string; version: number; config: Record<string, unknown> }[];
  };

test("an API key added to the config file works without a restart, while a stream runs to its end", async () => {
  const gatewayPid = mesh.supervisor.pid("gateway");
  assert.equal((await models(addedKey)).status, 401);
  const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${firstKey}` },
    body: JSON.stringify({
      model: "sim-gpt-oss-20b",
      messages: [{ role: "user", content: "Tell me a story" }],
      max_tokens: 120,
      stream: true,
    }),
  });
  assert.equal(response.status, 200);
  let text = "";
  let streamEnded = false;
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of response.body!) text += decoder.decode(chunk, { stream: true });
    streamEnded = true;
  })();
  await waitFor("the stream's first tokens", () => text.includes('"content"'));

  writeFileSync(gatewayFile, gatewayConfig([...startingKeys, { name: "added", key: addedKey }]));
  await waitFor("the added key to work", async () => (await models(addedKey)).status === 200);
  assert.equal(streamEnded, false, "the key worked while the stream was still running");

  await reading;
  assert.match(text, /"finish_reason":"(stop|length)"/);
  assert.match(text, /data: \[DONE\]\n\n$/);
  assert.doesNotMatch(text, /"error"/);
  assert.equal(mesh.supervisor.pid("gateway"), gatewayPid, "the same gateway process");
  assert.equal((await models(firstKey)).status, 200, "the key it had still works");

  // The running config, version 2, with every key redacted.
  const { data } = await adminConfig();
  const gateway = data.find((entry) => entry.service === "gateway")!;
  assert.equal(gateway.version, 2);
  assert.equal((gateway.config.apiKeys as { key: string }[]).length, 3);
  assert.ok((gateway.config.apiKeys as { key: string }[]).every((key) => key.key === "[redacted]"));
  assert.doesNotMatch(JSON.stringify(data), /sk-(admin|first|added)-/);
});

test("a bad file keeps the running config, names the setting in the log and raises the metric; a restart-only setting is named, not applied", async () => {
  const gatewayMetrics = `${mesh.baseUrl}/metrics`;
  writeFileSync(gatewayFile, gatewayConfig(startingKeys, { auth: "sometimes" }));
  await waitFor("the reload to be rejected", async () => (await metricValue(gatewayMetrics, "infermesh_config_reload_failing")) === 1);
  assert.equal((await models(addedKey)).status, 200, "the running config (with the added key) stays");
  const rejected = mesh.logs.find((line) => line.includes("configuration reload rejected"));
  assert.ok(rejected, "the rejection is logged");
  assert.match(rejected, /setting \\"auth\\"/);
  assert.doesNotMatch(mesh.logs.join("\n"), /sk-(admin|first|added)-/);

  // Fixed, with a setting that takes a restart: the keys apply, the body limit stays and is named.
  writeFileSync(gatewayFile, gatewayConfig(startingKeys, { bodyLimitBytes: 4_096 }));
  await waitFor("the added key to be gone", async () => (await models(addedKey)).status === 401);
  assert.equal(await metricValue(gatewayMetrics, "infermesh_config_reload_failing"), 0);
  assert.ok(mesh.logs.some((line) => line.includes("bodyLimitBytes changed, but take a restart")));
  const gateway = (await adminConfig()).data.find((entry) => entry.service === "gateway")!;
  assert.equal(gateway.config.bodyLimitBytes, 8 * 1024 * 1024);
});

test("admission's limits reload on SIGHUP: the fleet's cap changes without a restart", async () => {
  const admissionPid = mesh.supervisor.pid("admission")!;
  writeFileSync(admissionFile, stringify({ maxConcurrency: 24, maxQueueBatch: 100 }));
  process.kill(admissionPid, "SIGHUP");
  await waitFor("admission's new config", async () => {
    const admission = (await adminConfig()).data.find((entry) => entry.service === "admission");
    return admission?.version === 2 && admission.config.maxConcurrency === 24;
  });
  const admissionMetrics = `http://127.0.0.1:${mesh.ports.admissionMetrics}/metrics`;
  await waitFor("the scheduler's capacity", async () => (await metricValue(admissionMetrics, "infermesh_admission_capacity")) === 24);
  assert.equal(mesh.supervisor.pid("admission"), admissionPid, "the same admission process");
});
