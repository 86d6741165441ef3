/**
 * The whole mesh as separate processes — gateway, admission, router, memory-guard and a
 * llama.cpp worker on the generated tiny model — driven by the official openai SDK.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { credentials, type ChannelCredentials } from "@grpc/grpc-js";
import { createChannel, createClient, Status, type Client } from "nice-grpc";
import OpenAI from "openai";
import { AdmissionServiceDefinition } from "../../gen/infermesh/admission/v1/admission_service.js";
import { ChatServiceDefinition } from "../../gen/infermesh/gateway/v1/chat_service.js";
import { WorkerServiceDefinition } from "../../gen/infermesh/worker/v1/worker_service.js";
import { meshCredentials, metricSum, metricValue, OtlpCollector, startTestMesh, waitFor, type TestMesh } from "../support/harness.js";
import { listServices, describeSymbol } from "../support/reflection-client.js";

const model = "infermesh-test";
let mesh: TestMesh;
let openai: OpenAI;
let collector: OtlpCollector;
let worker: Client<typeof WorkerServiceDefinition>;
let admission: Client<typeof AdmissionServiceDefinition>;

before(async () => {
  collector = new OtlpCollector();
  await collector.start();
  mesh = await startTestMesh({ otlpEndpoint: collector.endpoint });
  openai = new OpenAI({ baseURL: `${mesh.baseUrl}/v1`, apiKey: "not-needed-locally", maxRetries: 0, timeout: 30_000 });
  worker = createClient(WorkerServiceDefinition, mesh.channel(mesh.ports.workerBase, "worker", "gateway"));
  admission = createClient(AdmissionServiceDefinition, mesh.channel(mesh.ports.admission, "admission", "gateway"));
});

after(async () => {
  await mesh?.stop();
  await collector?.stop();
});

const question = [{ role: "user" as const, content: "Tell me about the weather in the mountains." }];

/** The worker's own greedy answer, asked directly over gRPC, bypassing the mesh. */
async function workerAnswer(maxTokens: number): Promise<string> {
  let text = "";
  for await (const response of worker.generate({
    requestId: "direct",
    model,
    messages: question,
    prompt: undefined,
    sampling: { temperature: 0, maxTokens, stop: [] },
  })) {
    if (response.event?.$case === "delta") text += response.event.value.text;
  }
  return text;
}

const workerMetrics = () => `http://127.0.0.1:${mesh.ports.workerMetricsBase}/metrics`;
const workersLost = () => metricSum(`http://127.0.0.1:${mesh.ports.routerMetrics}/metrics`, "infermesh_router_workers_lost_total");
const inFlightSlots = async () => (await admission.getStats({})).inFlight;

test("GET /v1/models lists the generated test model", async () => {
  const models = await openai.models.list();
  assert.deepEqual(
    models.data.map((entry) => entry.id),
    [model],
  );
});

test("a non-streamed chat completion returns the worker's tokens", async () => {
  const { data: completion, response } = await openai.chat.completions
    .create({ model, messages: question, max_tokens: 24, temperature: 0 })
    .withResponse();
  assert.match(response.headers.get("x-request-id") ?? "", /^[0-9a-f-]{36}$/);
  assert.equal(completion.object, "chat.completion");
  assert.equal(completion.model, model);
  const choice = completion.choices[0]!;
  assert.equal(choice.message.role, "assistant");
  assert.ok(choice.message.content && choice.message.content.length > 0, "the answer has text");
  assert.equal(choice.message.content, await workerAnswer(24), "the same greedy answer as the worker gives directly");
  assert.ok(completion.usage && completion.usage.completion_tokens > 0 && completion.usage.completion_tokens <= 24);
  assert.ok(completion.usage.prompt_tokens > 5);
  assert.equal(completion.usage.total_tokens, completion.usage.prompt_tokens + completion.usage.completion_tokens);
});

test("a streamed chat completion sends role first, one id, the worker's tokens, usage and [DONE]", async () => {
  const stream = await openai.chat.completions.create({
    model,
    messages: question,
    max_tokens: 24,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.equal(chunks[0]!.choices[0]!.delta.role, "assistant");
  assert.equal(new Set(chunks.map((chunk) => chunk.id)).size, 1, "every chunk carries the same id");
  const text = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("");
  assert.equal(text, await workerAnswer(24));
  const finishing = chunks.filter((chunk) => chunk.choices[0]?.finish_reason);
  assert.equal(finishing.length, 1);
  const usageChunk = chunks.at(-1)!;
  assert.deepEqual(usageChunk.choices, []);
  assert.ok(usageChunk.usage && usageChunk.usage.completion_tokens > 0);
  assert.ok(
    chunks.slice(0, -1).every((chunk) => chunk.usage === null),
    "only the last chunk carries usage",
  );
});

test("the raw SSE stream is framed as data: lines ending with [DONE]", async () => {
  const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: question, max_tokens: 4, stream: true }),
  });
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
  const body = await response.text();
  const events = body.split("\n\n").filter(Boolean);
  assert.ok(
    events.every((event) => event.startsWith("data: ")),
    "every event is a data: line",
  );
  assert.equal(events.at(-1), "data: [DONE]");
  assert.ok(body.endsWith("\n\n"));
});

// Memory-guard is off the request's path: it learns reservations from the workers' KV
// report streams, so a request's trace spans the four processes that handle it.
test("one request is one trace with spans from every process it passes through, rooted at the gateway's HTTP span", async () => {
  const { response } = await openai.chat.completions.create({ model, messages: question, max_tokens: 4 }).withResponse();
  const requestId = response.headers.get("x-request-id");
  const root = await waitFor("the gateway's span", () =>
    collector.spans.find((span) => span.attributes["infermesh.request_id"] === requestId),
  );
  assert.equal(root.service, "infermesh-gateway");
  assert.equal(root.parentSpanId, "", "the gateway's HTTP span is the root");
  const services = await waitFor("spans from every process", () => {
    const seen = new Set(collector.spans.filter((span) => span.traceId === root.traceId).map((span) => span.service));
    return seen.size === 4 ? seen : undefined;
  });
  assert.deepEqual([...services].sort(), ["infermesh-admission", "infermesh-gateway", "infermesh-router", "infermesh-worker"]);
});

test("bad input gets OpenAI-shaped errors and the gateway stays up", async () => {
  const post = (body: string) =>
    fetch(`${mesh.baseUrl}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body });
  const malformed = await post("{not json");
  assert.equal(malformed.status, 400);
  const malformedBody = (await malformed.json()) as { error: Record<string, unknown> };
  assert.deepEqual(Object.keys(malformedBody.error).sort(), ["code", "message", "param", "type"]);
  assert.equal(malformedBody.error.type, "invalid_request_error");

  await assert.rejects(openai.chat.completions.create({ model } as never), (error: unknown) => {
    assert.ok(error instanceof OpenAI.BadRequestError);
    assert.equal((error.error as { param?: string }).param, "messages");
    return true;
  });
  await assert.rejects(openai.chat.completions.create({ model: "no-such-model", messages: question }), (error: unknown) => {
    assert.ok(error instanceof OpenAI.NotFoundError);
    assert.equal(error.code, "model_not_found");
    return true;
  });
  await assert.rejects(
    openai.chat.completions.create({ model, messages: [{ role: "user", content: 42 as never }] }),
    (error: unknown) => error instanceof OpenAI.BadRequestError && /messages\[0\]\.content/.test(error.message),
  );
  const healthy = await openai.chat.completions.create({ model, messages: question, max_tokens: 2 });
  assert.ok(healthy.choices[0]!.message.content !== undefined);
  assert.equal(await inFlightSlots(), 0, "no admission slot was left behind");
});

test("the public gRPC API streams a chat through the same path", async () => {
  const chat = createClient(ChatServiceDefinition, createChannel(`127.0.0.1:${mesh.ports.gatewayGrpc}`));
  let text = "";
  let finished = false;
  for await (const response of chat.streamChat({
    model,
    messages: question,
    sampling: { temperature: 0, maxTokens: 24, stop: [] },
    user: "",
  })) {
    if (response.event?.$case === "delta") text += response.event.value.content;
    if (response.event?.$case === "finished") finished = response.event.value.usage!.completionTokens > 0;
  }
  assert.ok(finished);
  assert.equal(text, await workerAnswer(24));
  await assert.rejects(
    chat.chat({ model: "no-such-model", messages: question, sampling: undefined, user: "" }),
    (error: any) => error.code === Status.NOT_FOUND,
  );
  await assert.rejects(
    chat.chat({ model, messages: [], sampling: undefined, user: "" }),
    (error: any) => error.code === Status.INVALID_ARGUMENT,
  );
});

test("every port lists and describes its services by reflection, as grpcurl does (internal ports to the operator's certificate)", async () => {
  const expected: [number, string, ChannelCredentials][] = [
    [mesh.ports.gatewayGrpc, "infermesh.gateway.v1.ChatService", credentials.createInsecure()],
    [mesh.ports.admission, "infermesh.admission.v1.AdmissionService", meshCredentials(mesh.pkiDir, "admission", "operator")],
    [mesh.ports.router, "infermesh.router.v1.RouterService", meshCredentials(mesh.pkiDir, "router", "operator")],
    [mesh.ports.memoryGuard, "infermesh.memory.v1.MemoryGuardService", meshCredentials(mesh.pkiDir, "memory-guard", "operator")],
    [mesh.ports.workerBase, "infermesh.worker.v1.WorkerService", meshCredentials(mesh.pkiDir, "worker", "operator")],
  ];
  for (const [port, service, asOperator] of expected) {
    const services = await listServices(`127.0.0.1:${port}`, asOperator);
    assert.ok(services.includes(service), `${port} lists ${service}`);
    assert.ok(services.includes("grpc.health.v1.Health"));
    const files = await describeSymbol(`127.0.0.1:${port}`, service, asOperator);
    // Every type the service uses resolves within the returned files, fully qualified.
    const defined = new Set(files.flatMap((file) => file.types.map((type) => `.${file.package}.${type}`)));
    const referenced = files.flatMap((file) => file.references);
    assert.ok(referenced.length > 0);
    for (const reference of referenced) assert.ok(defined.has(reference), `${reference} resolves on port ${port}`);
  }
});

test("a client that disconnects mid-stream stops the worker's decoding and frees its slot", async () => {
  const tokensBefore = (await metricValue(workerMetrics(), "vllm:generation_tokens_total")) ?? 0;
  const abort = new AbortController();
  const stream = await openai.chat.completions.create(
    { model, messages: question, max_tokens: 1500, temperature: 0, stream: true },
    { signal: abort.signal },
  );
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta.content) {
      assert.equal(await inFlightSlots(), 1, "the request holds an admission slot while it streams");
      abort.abort();
      break;
    }
  }
  await waitFor(
    "the worker to record the cancellation",
    async () => (await metricValue(workerMetrics(), 'infermesh_worker_generations_total{outcome="cancelled"')) === 1,
  );
  await waitFor("the admission slot to be freed", async () => (await inFlightSlots()) === 0);
  const decoded = ((await metricValue(workerMetrics(), "vllm:generation_tokens_total")) ?? 0) - tokensBefore;
  assert.ok(decoded < 1000, `decoding stopped early (${decoded} of 1500 tokens)`);
});

test("a worker stopped with SIGTERM finishes the generation it is running before it exits, and leaves the router without counting as lost", async () => {
  const lostBefore = await workersLost();
  const stream = await openai.chat.completions.create({ model, messages: question, max_tokens: 1500, temperature: 0, stream: true });
  const pid = mesh.supervisor.pid("worker-0")!;
  let signalled = false;
  let finishReason: string | null | undefined;
  let text = "";
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? "";
    if (!signalled && text.length > 0) {
      signalled = true;
      process.kill(pid, "SIGTERM");
    }
    finishReason ??= chunk.choices[0]?.finish_reason;
  }
  assert.equal(finishReason, "length", "the running generation was drained, not cut");
  await waitFor("the supervisor to restart the worker", () => mesh.supervisor.pid("worker-0") !== pid);
  await waitFor(
    "the restarted worker to serve",
    async () => {
      const answer = await openai.chat.completions.create({ model, messages: question, max_tokens: 2 });
      return answer.choices.length === 1;
    },
    30_000,
  );
  assert.equal(await workersLost(), lostBefore);
});

test("a worker that dies mid-stream ends the stream with an error, frees the slot, is counted as lost by the router, and is restarted", async () => {
  const lostBefore = await workersLost();
  // Precondition: this prompt runs the full 1500 tokens (greedy decoding is deterministic).
  const full = await openai.chat.completions.create({ model, messages: question, max_tokens: 1500, temperature: 0 });
  assert.equal(full.choices[0]!.finish_reason, "length");

  const stream = await openai.chat.completions.create({ model, messages: question, max_tokens: 1500, temperature: 0, stream: true });
  const pid = mesh.supervisor.pid("worker-0")!;
  await assert.rejects(
    (async () => {
      for await (const chunk of stream) if (chunk.choices[0]?.delta.content) process.kill(pid, "SIGKILL");
    })(),
    (error: unknown) => error instanceof OpenAI.APIError && /worker/.test(error.message),
  );
  await waitFor("the admission slot to be freed", async () => (await inFlightSlots()) === 0);
  await waitFor(
    "the restarted worker to serve",
    async () => {
      const answer = await openai.chat.completions.create({ model, messages: question, max_tokens: 2 });
      return answer.choices.length === 1;
    },
    30_000,
  );
  assert.notEqual(mesh.supervisor.pid("worker-0"), pid);
  assert.equal(await workersLost(), lostBefore + 1);
});

test("the worker re-registers by itself after a router restart", async () => {
  const pid = mesh.supervisor.pid("router")!;
  process.kill(pid, "SIGKILL");
  await waitFor("a new router", () => mesh.supervisor.pid("router") !== pid);
  await waitFor(
    "a request to succeed through the new router",
    async () => {
      const answer = await openai.chat.completions.create({ model, messages: question, max_tokens: 2 });
      return answer.choices.length === 1;
    },
    20_000,
  );
});
