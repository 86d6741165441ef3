/**
 * The worker over gRPC, inside a running mesh: choices, tokenizer and embedding RPCs,
 * prefix reuse as the router and Prometheus see it, and a model that fails to load.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { createClient, Status, type Client } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import { ServingState } from "../../gen/infermesh/common/v1/common.js";
import { RouterServiceDefinition } from "../../gen/infermesh/router/v1/router_service.js";
import { WorkerServiceDefinition, type GenerateResponse } from "../../gen/infermesh/worker/v1/worker_service.js";
import { repoRoot } from "../../services/common/paths.js";
import { freePorts, metricValue, startTestMesh, waitFor, type TestMesh } from "../support/harness.js";

const model = "infermesh-test";
let mesh: TestMesh;
let worker: Client<typeof WorkerServiceDefinition>;
let router: Client<typeof RouterServiceDefinition>;

before(async () => {
  mesh = await startTestMesh();
  worker = createClient(WorkerServiceDefinition, mesh.channel(mesh.ports.workerBase, "worker", "gateway"));
  router = createClient(RouterServiceDefinition, mesh.channel(mesh.ports.router, "router", "gateway"));
});

after(() => mesh?.stop());

async function collect(stream: AsyncIterable<GenerateResponse>): Promise<GenerateResponse["event"][]> {
  const events: GenerateResponse["event"][] = [];
  for await (const response of stream) events.push(response.event);
  return events;
}

test("n choices stream interleaved by index, each ends once, and the usage sums them", async () => {
  const events = await collect(
    worker.generate({
      requestId: "n3",
      model,
      messages: [{ role: "user", content: "Name three colours." }],
      sampling: { n: 3, seed: 11, temperature: 1, maxTokens: 12 },
    }),
  );
  const texts = ["", "", ""];
  let deltaTokens = 0;
  for (const event of events) {
    if (event?.$case === "delta") {
      texts[event.value.index] += event.value.text;
      deltaTokens += event.value.tokenCount;
    }
  }
  const ends = events.filter((event) => event?.$case === "choiceEnd").map((event) => event.value);
  assert.deepEqual(ends.map((end) => end.index).sort(), [0, 1, 2]);
  const finished = events.at(-1);
  assert.equal(finished?.$case, "finished");
  assert.equal(
    finished.value.usage?.completionTokens,
    ends.reduce((sum, end) => sum + end.completionTokens, 0),
  );
  assert.equal(finished.value.usage?.completionTokens, deltaTokens);
  assert.equal(new Set(texts).size, 3, "seed + index gives each choice its own sample");
  await assert.rejects(
    collect(worker.generate({ requestId: "n99", model, messages: [{ role: "user", content: "x" }], sampling: { n: 99 } })),
    (error: { code?: Status }) => error.code === Status.INVALID_ARGUMENT,
  );
});

test("Tokenize, Detokenize and Embed answer over gRPC", async () => {
  const text = "Grüße aus dem Mesh";
  const { tokens, tokenCount } = await worker.tokenize({ model, text });
  assert.equal(tokenCount, tokens.length);
  assert.equal((await worker.detokenize({ model, tokens })).text, text);
  const chat = await worker.tokenize({ model, messages: [{ role: "user", content: text }] });
  assert.ok(chat.tokenCount > tokenCount);
  const { embeddings, promptTokens } = await worker.embed({ model, inputs: ["one", "two"] });
  assert.equal(embeddings.length, 2);
  assert.ok(promptTokens >= 2);
  assert.ok(Math.abs(Math.hypot(...embeddings[0]!.values) - 1) < 1e-4);
  await assert.rejects(
    worker.detokenize({ model, tokens: [99_999_999] }),
    (error: { code?: Status }) => error.code === Status.INVALID_ARGUMENT,
  );
  await assert.rejects(worker.embed({ model: "nope", inputs: ["x"] }), (error: { code?: Status }) => error.code === Status.NOT_FOUND);
});

test("a shared prefix is served from cache, and Prometheus and the router both see the hits", async () => {
  const system = "You are the infermesh assistant; answer in one short sentence. ".repeat(10);
  const ask = (question: string) =>
    collect(
      worker.generate({
        requestId: question,
        model,
        messages: [
          { role: "system", content: system },
          { role: "user", content: question },
        ],
        sampling: { maxTokens: 4 },
      }),
    );
  const cold = (await ask("first?"))[0];
  const warm = (await ask("second?"))[0];
  assert.equal(cold?.$case, "started");
  assert.equal(warm?.$case, "started");
  assert.ok(warm.value.cachedTokens > 0.8 * cold.value.promptTokens, `${warm.value.cachedTokens} of ${warm.value.promptTokens} cached`);
  const hits = await metricValue(`http://127.0.0.1:${mesh.ports.workerMetricsBase}/metrics`, "vllm:prefix_cache_hits_total{");
  assert.ok(hits !== undefined && hits >= warm.value.cachedTokens);
  await waitFor("the router to see the prefix-cache hits", async () => {
    const { workers } = await router.listWorkers({});
    return (workers[0]?.load?.prefixCacheHits ?? 0) >= warm.value.cachedTokens;
  });
});

test("a GGUF that fails to load leaves the worker NOT_SERVING with the reason, said plainly in its log", async () => {
  const badModel = join(tmpdir(), `infermesh-broken-${process.pid}.gguf`);
  await writeFile(badModel, "this is not a GGUF file");
  const [grpcPort, metricsPort, deadPort] = await freePorts(3);
  const child = spawn(
    process.execPath,
    [
      join(repoRoot(), "dist/services/worker/main.js"),
      "--tls-dir",
      join(mesh.pkiDir, "worker"),
      "--listen",
      `127.0.0.1:${grpcPort}`,
      "--metrics-port",
      String(metricsPort),
      "--router-address",
      `127.0.0.1:${deadPort}`,
      "--memory-guard-address",
      "",
      "--model-path",
      badModel,
      "--gpu",
      "cpu",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  child.stdout.on("data", (chunk) => (log += chunk));
  child.stderr.on("data", (chunk) => (log += chunk));
  try {
    const client = createClient(WorkerServiceDefinition, mesh.channel(grpcPort!, "worker", "gateway"));
    const info = await waitFor("the worker to give up on the model", async () => {
      const answer = await client.getInfo({}).catch(() => undefined);
      return answer?.state === ServingState.SERVING_STATE_FAILED ? answer : undefined;
    });
    assert.ok(info.stateReason.length > 0);
    const health = createClient(HealthDefinition, mesh.channel(grpcPort!, "worker", "operator"));
    const status = await health.check({ service: "infermesh.worker.v1.WorkerService" });
    assert.equal(status.status, 2 /* NOT_SERVING in grpc.health.v1 */);
    await assert.rejects(
      collect(client.generate({ requestId: "x", model, prompt: "hi" })),
      (error: { code?: Status }) => error.code === Status.UNAVAILABLE,
    );
    assert.match(log, /the model failed to load; this worker stays NOT_SERVING/);
  } finally {
    child.kill("SIGKILL");
  }
});
