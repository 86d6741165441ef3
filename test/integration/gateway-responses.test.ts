/**
 * OpenAI's Responses API as its clients use it: the official openai SDK
 * (responses.create, .stream, .parse, retrieve, delete, input items, a tool loop) and
 * the Vercel AI SDK's default OpenAI provider, against a mesh of sim workers (whose
 * synthetic output has gpt-oss's shapes: reasoning, tool calls, JSON).
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, streamText, tool } from "ai";
import OpenAI from "openai";
import { zodTextFormat } from "openai/helpers/zod";
import { z } from "zod";
import { startTestMesh, type TestMesh } from "../support/harness.js";

const model = "sim-gpt-oss-20b";
const keys = { acme: "sk-test-acme-00000000000000001", other: "sk-test-other-0000000000000002" };
let mesh: TestMesh;
let openai: OpenAI;

before(async () => {
  const config = join(mkdtempSync(join(tmpdir(), "infermesh-responses-")), "gateway.json");
  writeFileSync(
    config,
    JSON.stringify({
      auth: "required",
      apiKeys: [
        { name: "acme", key: keys.acme, tenant: "acme" },
        { name: "other", key: keys.other, tenant: "other" },
      ],
    }),
  );
  mesh = await startTestMesh({ workerArgs: ["--engine", "sim", "--sim-time-scale", "0"], gatewayArgs: ["--config", config] });
  openai = new OpenAI({ baseURL: `${mesh.baseUrl}/v1`, apiKey: keys.acme, maxRetries: 0, timeout: 30_000 });
});

after(() => mesh?.stop());

const weather = {
  type: "function" as const,
  name: "get_weather",
  description: "Current weather of a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"], additionalProperties: false },
  strict: true,
};

test("responses.create: an answer as a message item with usage; retrieve, input items and delete work on the stored response", async () => {
  const response = await openai.responses.create({ model, instructions: "Be brief.", input: "What is the capital of France?" });
  assert.match(response.id, /^resp_/);
  assert.equal(response.object, "response");
  assert.equal(response.status, "completed");
  assert.equal(response.model, model);
  assert.equal(response.instructions, "Be brief.");
  const message = response.output.find((item) => item.type === "message");
  assert.ok(message?.type === "message" && message.role === "assistant");
  assert.ok(response.output_text.length > 0, "the SDK's output_text has the answer");
  assert.ok(response.usage!.input_tokens > 0 && response.usage!.output_tokens > 0);
  assert.equal(response.usage!.total_tokens, response.usage!.input_tokens + response.usage!.output_tokens);

  const retrieved = await openai.responses.retrieve(response.id);
  assert.deepEqual(retrieved.output, response.output);
  const items = await openai.responses.inputItems.list(response.id);
  assert.equal(items.data.length, 1);
  const [item] = items.data;
  assert.ok(item?.type === "message" && item.role === "user");
  assert.deepEqual(item.content, [{ type: "input_text", text: "What is the capital of France?" }]);

  const elsewhere = new OpenAI({ baseURL: `${mesh.baseUrl}/v1`, apiKey: keys.other, maxRetries: 0 });
  await assert.rejects(elsewhere.responses.retrieve(response.id), OpenAI.NotFoundError, "another tenant never reads it");
  await assert.rejects(elsewhere.responses.delete(response.id), OpenAI.NotFoundError);
  await openai.responses.delete(response.id);
  await assert.rejects(openai.responses.retrieve(response.id), OpenAI.NotFoundError);
});

test("responses.stream: OpenAI's event sequence, numbered, with the reasoning as a reasoning item first", async () => {
  const stream = openai.responses.stream({ model, input: "Why is the sky blue?", reasoning: { effort: "high" }, max_output_tokens: 2_048 });
  const types: string[] = [];
  const numbers: number[] = [];
  let text = "";
  let reasoning = "";
  for await (const event of stream) {
    types.push(event.type);
    numbers.push(event.sequence_number);
    if (event.type === "response.output_text.delta") text += event.delta;
    if (event.type === "response.reasoning_text.delta") reasoning += event.delta;
  }
  const final = await stream.finalResponse();
  assert.deepEqual(types.slice(0, 4), [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
  ]);
  assert.equal(types.at(-1), "response.completed");
  assert.deepEqual(
    numbers,
    numbers.map((_, index) => index),
  );
  assert.deepEqual(
    final.output.map((item) => item.type),
    ["reasoning", "message"],
  );
  assert.ok(reasoning.length > 0 && text.length > 0);
  assert.equal(final.output_text, text);
  const [reasoningItem] = final.output;
  assert.ok(reasoningItem?.type === "reasoning");
  assert.equal(reasoningItem.content?.[0]?.text, reasoning);
  assert.ok(final.usage!.output_tokens_details.reasoning_tokens > 0);
  assert.equal((await openai.responses.retrieve(final.id)).status, "completed", "a streamed response is stored too");
});

test("a tool loop: the function call, then its output sent back with previous_response_id, then the answer", async () => {
  const first = await openai.responses.create({ model, input: "Weather in Paris?", tools: [weather] });
  const call = first.output.find((item) => item.type === "function_call");
  assert.ok(call?.type === "function_call");
  assert.equal(call.name, "get_weather");
  assert.equal(typeof (JSON.parse(call.arguments) as { city?: unknown }).city, "string");
  const second = await openai.responses.create({
    model,
    previous_response_id: first.id,
    input: [{ type: "function_call_output", call_id: call.call_id, output: '{"temperature":21}' }],
    tools: [weather],
  });
  assert.equal(second.previous_response_id, first.id);
  assert.ok(second.output_text.length > 0, "the model answers from the tool's result");
  assert.ok(second.usage!.input_tokens > first.usage!.input_tokens, "the earlier turn is in the prompt");

  // Stateless, as with store: false: the caller sends the whole conversation back.
  const stateless = await openai.responses.create({
    model,
    store: false,
    input: [
      { role: "user", content: "Weather in Paris?" },
      ...(first.output as OpenAI.Responses.ResponseInputItem[]),
      { type: "function_call_output", call_id: call.call_id, output: "21" },
    ],
    tools: [weather],
  });
  assert.ok(stateless.output_text.length > 0);
  await assert.rejects(openai.responses.retrieve(stateless.id), OpenAI.NotFoundError, "store: false keeps nothing");
});

test("streamed function calls: arguments arrive as deltas the SDK assembles", async () => {
  const stream = openai.responses.stream({ model, input: "Weather in Rome?", tools: [weather], tool_choice: "required" });
  let argumentsText = "";
  for await (const event of stream) if (event.type === "response.function_call_arguments.delta") argumentsText += event.delta;
  const final = await stream.finalResponse();
  const call = final.output.find((item) => item.type === "function_call");
  assert.ok(call?.type === "function_call");
  assert.equal(call.arguments, argumentsText);
});

test("responses.parse: structured output with text.format json_schema comes back parsed", async () => {
  const City = z.object({ name: z.string(), population: z.number(), landmarks: z.array(z.string()) });
  const response = await openai.responses.parse({ model, input: "Describe Paris.", text: { format: zodTextFormat(City, "city") } });
  const parsed = response.output_parsed;
  assert.ok(parsed);
  assert.equal(typeof parsed.name, "string");
  assert.equal(typeof parsed.population, "number");
  assert.ok(Array.isArray(parsed.landmarks));
});

test("refusals are OpenAI-shaped and name what is not supported", async () => {
  const refused = async (body: object) => {
    const error = await openai.responses.create({ model, input: "hi", ...body } as never).then(
      () => assert.fail("expected a refusal"),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof OpenAI.APIError);
    return error;
  };
  const webSearch = await refused({ tools: [{ type: "web_search" }] });
  assert.equal(webSearch.status, 400);
  assert.equal(webSearch.param, "tools[0].type");
  assert.match(webSearch.message, /built-in tools \('web_search'\) are not supported/);
  assert.match((await refused({ background: true })).message, /background mode is not supported/);
  const tooLong = await refused({ max_output_tokens: 1_000_000 });
  assert.equal(tooLong.param, "max_output_tokens");
  assert.equal((await refused({ max_output_tokens: 0 })).param, "max_output_tokens");
  const unknown = await refused({ previous_response_id: "resp_unknown" });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.code, "previous_response_not_found");
});

test("max_output_tokens reached: status incomplete with its reason", async () => {
  const response = await openai.responses.create({ model, input: "Tell me a long story.", max_output_tokens: 3 });
  assert.equal(response.status, "incomplete");
  assert.deepEqual(response.incomplete_details, { reason: "max_output_tokens" });
  assert.equal(response.usage!.output_tokens, 3);
});

test("the Vercel AI SDK's default OpenAI provider (the Responses API): text, a stream, and a tool loop", async () => {
  const provider = createOpenAI({ baseURL: `${mesh.baseUrl}/v1`, apiKey: keys.acme });
  const whole = await generateText({ model: provider(model), prompt: "Say hello." });
  assert.ok(whole.text.length > 0);
  assert.equal(whole.finishReason, "stop");
  assert.ok((whole.usage.inputTokens ?? 0) > 0);

  const streamed = streamText({ model: provider(model), prompt: "Say hello." });
  let chunks = 0;
  for await (const chunk of streamed.textStream) chunks += chunk.length > 0 ? 1 : 0;
  assert.ok(chunks > 0);
  assert.ok((await streamed.text).length > 0);

  const calls: string[] = [];
  const loop = await generateText({
    model: provider(model),
    prompt: "Weather in Paris?",
    tools: {
      get_weather: tool({
        description: "Current weather of a city",
        inputSchema: z.object({ city: z.string() }),
        execute: async ({ city }) => {
          calls.push(city);
          return { temperature: 21 };
        },
      }),
    },
    stopWhen: stepCountIs(3),
  });
  assert.equal(calls.length, 1, "the tool ran once");
  assert.equal(loop.steps.length, 2, "a call, then the answer");
  assert.ok(loop.text.length > 0);
});
