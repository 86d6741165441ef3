/**
 * The `openai` engine against a real OpenAI-compatible server: a second infermesh mesh
 * (gateway, admission, router, memory-guard and a llama.cpp worker on the tiny test
 * model), reached only through the gateway's HTTP API.
 *
 * The gateway serves chat completions, completions, embeddings and models but not
 * /tokenize, so for that path this test checks how the engine reports an upstream that
 * lacks it. Nor does the gateway expose engine metrics at its HTTP root, so load() here
 * reports the engine's own open requests.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ChatMessage, FinishReason, ReasoningEffort, SamplingParams } from "../../gen/infermesh/common/v1/common.js";
import { EngineError, type GenerationEvent, type GenerationInput } from "../../services/worker/engines/engine.js";
import { OpenAiEngine } from "../../services/worker/engines/openai/openai-engine.js";
import { freePorts, startTestMesh, type TestMesh } from "../support/harness.js";

const model = "infermesh-test";
let mesh: TestMesh;
let meshStopped = false;
let engine: OpenAiEngine;

before(async () => {
  mesh = await startTestMesh();
  engine = await OpenAiEngine.start({ baseUrl: mesh.baseUrl, apiKey: "not-needed-locally", pollIntervalMs: 200 });
});

after(async () => {
  await engine?.close();
  if (!meshStopped) await mesh?.stop();
});

const question = [ChatMessage.create({ role: "user", content: "Tell me about the weather in the mountains." })];

function chat(overrides: Partial<GenerationInput> = {}): GenerationInput {
  return {
    requestId: "it",
    model,
    messages: question,
    prompt: undefined,
    sampling: SamplingParams.create({ temperature: 0, maxTokens: 16 }),
    tools: [],
    toolChoice: "",
    reasoningEffort: ReasoningEffort.REASONING_EFFORT_UNSPECIFIED,
    ...overrides,
  };
}

async function rejection(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run();
  } catch (error) {
    return error;
  }
  assert.fail("expected a rejection");
}

const drain = async (events: AsyncIterable<GenerationEvent>) => {
  const out: GenerationEvent[] = [];
  for await (const event of events) out.push(event);
  return out;
};

test("the engine discovers the mesh's model from GET /v1/models, with the context the gateway lists", () => {
  assert.deepEqual(
    engine.models().map((entry) => [entry.id, entry.engine, entry.contextTokens]),
    [[model, "openai", 2048]],
  );
});

test("a streamed chat generation yields started → deltas → finished with the gateway's usage", async () => {
  const events = await drain(engine.generate(chat(), new AbortController().signal));
  assert.equal(events[0]!.kind, "started");
  assert.equal(events.at(-1)!.kind, "finished");
  const deltas = events.filter((event) => event.kind === "delta");
  assert.ok(deltas.length > 0, "some text came back");
  assert.ok(events.slice(1, -1).every((event) => event.kind === "delta"));
  const text = deltas.map((event) => (event.kind === "delta" ? event.text : "")).join("");

  // The same greedy request, whole, straight to the gateway: its usage is the reference.
  const whole = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: question[0]!.content }], max_tokens: 16, temperature: 0 }),
  }).then(
    (response) =>
      response.json() as Promise<{
        choices: { message: { content: string } }[];
        usage: { prompt_tokens: number; completion_tokens: number };
      }>,
  );
  const finished = events.at(-1)!;
  assert.ok(finished.kind === "finished");
  assert.equal(finished.promptTokens, whole.usage.prompt_tokens);
  assert.equal(finished.completionTokens, whole.usage.completion_tokens);
  assert.ok([FinishReason.FINISH_REASON_STOP, FinishReason.FINISH_REASON_LENGTH].includes(finished.finishReason));
  assert.equal(text, whole.choices[0]!.message.content, "the same greedy answer streamed and whole");
  const started = events[0]!;
  assert.ok(started.kind === "started" && started.maxTokens === 16);
});

test("cancelling mid-stream ends the generation with CANCELLED, and load counts the open request until then", async () => {
  const controller = new AbortController();
  const events: GenerationEvent[] = [];
  let runningWhileOpen = -1;
  for await (const event of engine.generate(
    chat({ sampling: SamplingParams.create({ temperature: 0.8, maxTokens: 1500 }) }),
    controller.signal,
  )) {
    events.push(event);
    if (event.kind === "delta" && runningWhileOpen < 0) {
      runningWhileOpen = engine.load().runningRequests;
      controller.abort();
    }
  }
  assert.equal(runningWhileOpen, 1);
  const finished = events.at(-1)!;
  assert.ok(finished.kind === "finished");
  assert.equal(finished.finishReason, FinishReason.FINISH_REASON_CANCELLED);
  assert.ok(finished.completionTokens < 1500);
  assert.equal(engine.load().runningRequests, 0);
});

test("a model the mesh does not serve is not_found, with the gateway's message", async () => {
  const wider = await OpenAiEngine.start({ baseUrl: mesh.baseUrl, modelIds: [model, "no-such-model"] });
  try {
    const error = await rejection(() => drain(wider.generate(chat({ model: "no-such-model" }), new AbortController().signal)));
    assert.ok(error instanceof EngineError);
    assert.equal(error.kind, "not_found");
    assert.match(error.message, /upstream answered 404: .*no-such-model/);
  } finally {
    await wider.close();
  }
});

test("the gateway's /v1/completions and /v1/embeddings serve the engine; /tokenize, which it lacks, is unimplemented", async () => {
  const completion = await drain(engine.generate(chat({ messages: [], prompt: "Once upon a time" }), new AbortController().signal));
  const finished = completion.at(-1);
  assert.ok(finished?.kind === "finished" && finished.completionTokens > 0 && finished.completionTokens <= 16);
  assert.ok(completion.some((event) => event.kind === "delta" && event.text.length > 0));
  const embedding = await engine.embed(model, ["hello", "world"], new AbortController().signal);
  assert.equal(embedding.vectors.length, 2);
  assert.ok(embedding.vectors[0]!.length > 0);
  const tokens = await rejection(() => engine.tokenize(model, "hello"));
  assert.ok(tokens instanceof EngineError && tokens.kind === "unimplemented");
});

test("an upstream nobody listens on is unavailable: at start, and for a generation once the mesh has stopped", async () => {
  const [port] = await freePorts(1);
  const atStart = await rejection(() => OpenAiEngine.start({ baseUrl: `http://127.0.0.1:${port}`, requestTimeoutMs: 2_000 }));
  assert.ok(atStart instanceof EngineError);
  assert.equal(atStart.kind, "unavailable");

  await mesh.stop();
  meshStopped = true;
  const afterStop = await rejection(() => drain(engine.generate(chat(), new AbortController().signal)));
  assert.ok(afterStop instanceof EngineError, String(afterStop));
  assert.equal(afterStop.kind, "unavailable");
});
