/**
 * The router's policies on a live mesh of three sim workers (zero-cost, so only the
 * routing decides where a request goes): prompts sharing a long system prompt follow the
 * worker that holds its KV, a session follows its worker, and unrelated prompts spread.
 * Which worker served is read from each worker's own generation counter.
 */
import test, { after, before } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "nice-grpc";
import { RouterServiceDefinition } from "../../gen/infermesh/router/v1/router_service.js";
import { blockHashes, canonicalPrompt } from "../../services/common/prefix-hash.js";
import { startTestMesh, waitFor, type TestMesh } from "../support/harness.js";

const workers = 3;
let mesh: TestMesh;

before(async () => {
  mesh = await startTestMesh({ workers, workerArgs: ["--engine", "sim", "--sim-time-scale", "0"] });
  const router = createClient(RouterServiceDefinition, mesh.channel(mesh.ports.router, "router", "gateway"));
  await waitFor("all workers to register", async () => (await router.listWorkers({})).workers.length === workers);
});

after(async () => {
  await mesh?.stop();
});

/** Successful generations so far, per worker. */
async function servedCounts(): Promise<number[]> {
  return Promise.all(
    Array.from({ length: workers }, async (_, index) => {
      const text = await (await fetch(`http://127.0.0.1:${mesh.ports.workerMetricsBase + index}/metrics`)).text();
      const line = text
        .split("\n")
        .find((row) => row.startsWith("infermesh_worker_generations_total") && row.includes('outcome="finished"'));
      return line === undefined ? 0 : Number(line.split(" ").pop());
    }),
  );
}

async function chat(messages: { role: string; content: string }[], user?: string): Promise<void> {
  const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "sim-gpt-oss-20b", messages, max_tokens: 4, ...(user ? { user } : {}) }),
  });
  assert.equal(response.status, 200, await response.clone().text());
  await response.arrayBuffer();
}

/** Which workers served since `before`, and how many each. */
const delta = (before: number[], after: number[]) => after.map((count, index) => count - before[index]!);

test("requests sharing a long system prompt all go to the worker that holds it", async () => {
  const system = { role: "system", content: "You answer questions about the infermesh billing policy, briefly and exactly. ".repeat(30) };
  const before = await servedCounts();
  for (let turn = 0; turn < 8; turn += 1) await chat([system, { role: "user", content: `question number ${turn}: what is due?` }]);
  const served = delta(before, await servedCounts());
  assert.equal(
    served.reduce((sum, count) => sum + count, 0),
    8,
  );
  assert.deepEqual(
    served.filter((count) => count > 0),
    [8],
    `one worker served them all: ${served}`,
  );
});

test("a session's turns follow its worker even without a shared prefix", async () => {
  const before = await servedCounts();
  for (let turn = 0; turn < 6; turn += 1) await chat([{ role: "user", content: `short turn ${turn}` }], "session-alice");
  assert.deepEqual(
    delta(before, await servedCounts()).filter((count) => count > 0),
    [6],
  );
});

test("unrelated prompts are spread over the workers, not sent to one", async () => {
  const before = await servedCounts();
  for (let index = 0; index < 30; index += 1)
    await chat([{ role: "user", content: `unrelated prompt ${index} ${"with its own words ".repeat(index % 5)}` }]);
  const served = delta(before, await servedCounts());
  assert.ok(
    served.every((count) => count > 0),
    `every worker got some: ${served}`,
  );
});

test("Pick reports the reason and every scorer's score; the prefix holder is first after a worker's KV events", async () => {
  const router = createClient(RouterServiceDefinition, mesh.channel(mesh.ports.router, "router", "gateway"));
  const messages = [{ role: "system", content: "A system prompt only this test uses, long enough to fill several blocks. ".repeat(12) }];
  await chat(messages);
  const pick = await router.pick({
    requestId: "t",
    model: "sim-gpt-oss-20b",
    estimatedInputTokens: 300,
    excludeWorkerIds: [],
    sessionId: "",
    alternativeModels: [],
    prefixBlockHashes: blockHashes(canonicalPrompt({ messages: [...messages, { role: "user", content: "next" }] })),
    maxTokens: 16,
    choices: 1,
  });
  assert.equal(pick.reason, "prefix-affinity");
  assert.equal(pick.candidates.length, workers);
  assert.deepEqual(Object.keys(pick.candidates[0]!.scores).sort(), ["context", "health", "kv", "prefill", "prefix", "queue", "session"]);
  assert.ok(pick.candidates[0]!.scores.prefix! > 0.8);
  assert.equal(pick.candidates[1]!.scores.prefix, 0);
});
