import assert from "node:assert/strict";
import test from "node:test";
import { FinishReason } from "../../gen/infermesh/common/v1/common.js";
import { responsesBody } from "../http/responses/schema.js";
import type { GenerationEvent } from "../mesh/generation.js";
import { ApiError } from "../errors.js";
import { validateGeneration } from "../validation/generation.js";
import { chatMessagesOf, inputItemsOf, ResponseBuilder, responseEcho, responsesGenerationOf, responsesParam } from "./responses.js";

const delta = (fields: {
  text?: string;
  reasoningText?: string;
  toolCalls?: { index: number; id?: string; name?: string; arguments: string }[];
}) =>
  ({
    $case: "delta",
    value: {
      text: fields.text ?? "",
      reasoningText: fields.reasoningText ?? "",
      tokenCount: 1,
      index: 0,
      logprobs: [],
      toolCalls: (fields.toolCalls ?? []).map(({ index, id = "", name = "", arguments: args }) => ({
        index,
        call: { id, name, arguments: args },
      })),
    },
  }) satisfies GenerationEvent;

const finished = (reason = FinishReason.FINISH_REASON_STOP): GenerationEvent => ({
  $case: "finished",
  value: { finishReason: reason, usage: { promptTokens: 10, completionTokens: 5, cachedTokens: 4, reasoningTokens: 2 } },
});

function builder(events: { type: string; event: Record<string, unknown> }[] | undefined, parallelToolCalls = true) {
  const body = responsesBody.parse({ model: "m", input: "hi" });
  return new ResponseBuilder(
    { id: "resp_1", created_at: 1, model: "m", ...responseEcho(body) },
    { logprobs: false, parallelToolCalls },
    events && ((type, event) => events.push({ type, event })),
  );
}

test("a stream's events: created, in_progress, each item opened, filled and closed in order, then completed, numbered from 0", () => {
  const events: { type: string; event: Record<string, unknown> }[] = [];
  const response = builder(events);
  response.start();
  for (const event of [
    delta({ reasoningText: "Think" }),
    delta({ reasoningText: "ing." }),
    delta({ text: "Hello" }),
    delta({ toolCalls: [{ index: 0, id: "call_a", name: "f", arguments: '{"x":' }] }),
    delta({ toolCalls: [{ index: 0, arguments: "1}" }] }),
    delta({ toolCalls: [{ index: 1, id: "call_b", name: "g", arguments: "{}" }] }),
    finished(),
  ]) {
    response.add(event);
  }
  assert.deepEqual(
    events.map(({ type }) => type),
    [
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.reasoning_text.delta",
      "response.reasoning_text.delta",
      "response.reasoning_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed",
    ],
  );
  assert.deepEqual(
    events.map(({ event }) => event.sequence_number),
    events.map((_, index) => index),
  );
  const final = response.response();
  assert.equal(final.status, "completed");
  assert.deepEqual(
    final.output.map((item) => item.type),
    ["reasoning", "message", "function_call", "function_call"],
  );
  assert.deepEqual(final.output[0]!.content, [{ type: "reasoning_text", text: "Thinking." }]);
  assert.equal((final.output[2] as { arguments?: string }).arguments, '{"x":1}');
  assert.equal((final.output[2] as { call_id?: string }).call_id, "call_a");
  assert.deepEqual(final.usage, {
    input_tokens: 10,
    input_tokens_details: { cached_tokens: 4 },
    output_tokens: 5,
    output_tokens_details: { reasoning_tokens: 2 },
    total_tokens: 15,
  });
  const done = events.find(({ type }) => type === "response.function_call_arguments.done")!.event;
  assert.equal(done.arguments, '{"x":1}');
  assert.equal(events.at(-1)!.event.response && (events.at(-1)!.event.response as { status: string }).status, "completed");
});

test("max_output_tokens reached: incomplete with its reason; an error after the start: failed with the error, the open item closed", () => {
  const cut = builder(undefined);
  cut.add(delta({ text: "Hel" }));
  cut.add(finished(FinishReason.FINISH_REASON_LENGTH));
  assert.equal(cut.response().status, "incomplete");
  assert.deepEqual(cut.response().incomplete_details, { reason: "max_output_tokens" });

  const events: { type: string; event: Record<string, unknown> }[] = [];
  const failing = builder(events);
  failing.start();
  failing.add(delta({ text: "Hel" }));
  failing.add({ $case: "error", value: { statusCode: 14, message: "the worker failed during generation", retryable: true } });
  assert.deepEqual(
    events.slice(-4).map(({ type }) => type),
    ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.failed"],
  );
  const failed = failing.response();
  assert.equal(failed.status, "failed");
  assert.equal(failed.error?.message, "the worker failed during generation");
  assert.ok(failing.ended);
});

test("parallel_tool_calls false keeps the model's first call only", () => {
  const response = builder(undefined, false);
  response.add(delta({ toolCalls: [{ index: 0, id: "call_a", name: "f", arguments: "{}" }] }));
  response.add(delta({ toolCalls: [{ index: 1, id: "call_b", name: "g", arguments: "{}" }] }));
  response.add(finished());
  assert.deepEqual(
    response.response().output.map((item) => (item as { call_id?: string }).call_id),
    ["call_a"],
  );
});

test("input items become the chat: reasoning goes with its turn, one turn's calls are one assistant message, outputs are tool messages", () => {
  const items = inputItemsOf(
    responsesBody.parse({
      model: "m",
      input: [
        { role: "user", content: "Weather in Paris and Rome?" },
        { type: "reasoning", summary: [], content: [{ type: "reasoning_text", text: "Two cities." }] },
        { type: "function_call", call_id: "c1", name: "w", arguments: '{"city":"Paris"}' },
        { type: "function_call", call_id: "c2", name: "w", arguments: '{"city":"Rome"}' },
        { type: "function_call_output", call_id: "c1", output: "21" },
        { type: "function_call_output", call_id: "c2", output: [{ type: "input_text", text: "25" }] },
        { type: "message", role: "assistant", content: [{ type: "output_text", text: "21 and 25." }] },
        { role: "user", content: [{ type: "input_text", text: "Thanks" }] },
      ],
    }).input,
    () => assert.fail("no references"),
  );
  assert.ok(items.every((item) => typeof item.id === "string" && item.id.length > 0));
  const messages = chatMessagesOf(items);
  assert.deepEqual(
    messages.map((message) => [
      message.role,
      message.content,
      message.toolCalls.map((call) => call.id),
      message.reasoningContent,
      message.toolCallId,
    ]),
    [
      ["user", "Weather in Paris and Rome?", [], "", ""],
      ["assistant", "", ["c1", "c2"], "Two cities.", ""],
      ["tool", "21", [], "", "c1"],
      ["tool", "25", [], "", "c2"],
      ["assistant", "21 and 25.", [], "", ""],
      ["user", "Thanks", [], "", ""],
    ],
  );
});

test("the schema refuses built-in tools, background mode, non-text input and oversized metadata by name", () => {
  const refusal = (body: object) => {
    const parsed = responsesBody.safeParse({ model: "m", input: "hi", ...body });
    assert.equal(parsed.success, false);
    const issue = parsed.error!.issues[0]!;
    return { path: issue.path.join("."), message: issue.message };
  };
  assert.deepEqual(refusal({ tools: [{ type: "web_search" }] }), {
    path: "tools.0.type",
    message: "built-in tools ('web_search') are not supported; infermesh serves function tools, which your code runs",
  });
  assert.match(refusal({ background: true }).message, /background mode is not supported/);
  assert.match(
    refusal({ input: [{ role: "user", content: [{ type: "input_image", image_url: "x" }] }] }).message,
    /'input_image' are not supported/,
  );
  assert.match(refusal({ input: [{ type: "file_search_call", id: "x" }] }).message, /'file_search_call' are not supported/);
  assert.match(refusal({ metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, "v"])) }).message, /at most 16/);
  assert.match(refusal({ truncation: "auto" }).message, /truncation 'auto' is not supported/);
});

test("the shared validation names parameters as the Responses API does", () => {
  const problem = (body: object) => {
    const parsed = responsesBody.parse({ model: "m", input: "hi", ...body });
    try {
      validateGeneration(
        responsesGenerationOf(
          parsed,
          [],
          inputItemsOf(parsed.input, () => assert.fail()),
        ),
        { rename: responsesParam },
      );
    } catch (error) {
      assert.ok(error instanceof ApiError);
      return [error.details.param, error.message];
    }
    assert.fail("expected a refusal");
  };
  assert.deepEqual(problem({ max_output_tokens: 0 }), [
    "max_output_tokens",
    "Invalid value for 'max_output_tokens': must be an integer at least 1 and at most 2147483647",
  ]);
  assert.equal(problem({ tools: [{ type: "function", name: "no spaces" }] })[0], "tools[0].name");
  assert.equal(problem({ text: { format: { type: "json_schema", name: "x", schema: { type: "bogus" } } } })[0], "text.format.schema");
  assert.equal(problem({ temperature: 3 })[0], "temperature");
  assert.equal(problem({ tool_choice: "required" })[0], "tool_choice");
});
