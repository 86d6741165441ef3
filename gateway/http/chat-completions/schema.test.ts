import test from "node:test";
import assert from "node:assert/strict";
import { Status } from "nice-grpc";
import { ApiError } from "../../errors.js";
import { chatGenerationOf } from "../../translate/openai.js";
import { validateGeneration } from "../../validation/generation.js";
import { parseBody } from "../validation.js";
import { chatCompletionBody, contentText } from "./schema.js";

/** What the route does with a body before resolving it: its shape, then its values. */
const parse = (body: unknown) => {
  const parsed = parseBody(chatCompletionBody, body);
  validateGeneration(chatGenerationOf(parsed));
  return parsed;
};
const minimal = { model: "m1", messages: [{ role: "user", content: "hi" }] };

/** The ApiError thrown when parsing and validating `body`. */
function rejection(body: unknown): ApiError {
  try {
    parse(body);
  } catch (error) {
    assert.ok(error instanceof ApiError, `expected an ApiError, got ${String(error)}`);
    assert.equal(error.status, Status.INVALID_ARGUMENT);
    return error;
  }
  assert.fail("expected the body to be rejected");
}

test("a minimal body is accepted", () => {
  assert.deepEqual(parse(minimal), minimal);
});

test("missing messages is a 400 naming 'messages'", () => {
  const error = rejection({ model: "m1" });
  assert.equal(error.details.param, "messages");
  assert.equal(error.details.code, "invalid_value");
  assert.match(error.message, /^Invalid value for 'messages': /);
  assert.equal(rejection({ model: "m1", messages: [] }).details.param, "messages");
});

test("a bad message field is named by its path", () => {
  const error = rejection({ model: "m1", messages: [{ role: "user", content: 5 }] });
  assert.equal(error.details.param, "messages[0].content");
  assert.match(error.message, /expected a string or an array of text parts/);
  assert.equal(
    rejection({ ...minimal, messages: [...minimal.messages, { role: "robot", content: "x" }] }).details.param,
    "messages[1].role",
  );
});

test("text-part content is accepted and contentText joins the parts", () => {
  const body = parse({
    model: "m1",
    messages: [
      {
        role: "user",
        content: [
          { type: "text", text: "Hello, " },
          { type: "text", text: "world" },
        ],
      },
    ],
  });
  assert.equal(contentText(body.messages[0]?.content), "Hello, world");
  assert.equal(contentText("plain"), "plain");
  assert.equal(contentText(null), "");
  const image = rejection({ model: "m1", messages: [{ role: "user", content: [{ type: "image_url", image_url: {} }] }] });
  assert.equal(image.details.param, "messages[0].content[0].type");
  assert.match(image.message, /'image_url' are not supported/);
  assert.equal(
    rejection({ model: "m1", messages: [{ role: "user", content: [{ type: "text" }] }] }).details.param,
    "messages[0].content[0].text",
  );
});

test("an assistant message may have null content", () => {
  const body = parse({ model: "m1", messages: [...minimal.messages, { role: "assistant", content: null }] });
  assert.equal(contentText(body.messages[1]?.content), "");
});

test("unknown top-level fields are ignored; a logit_bias that would change the answer is refused", () => {
  const body = parse({ ...minimal, service_tier: "auto", metadata: { a: "b" }, store: false, logit_bias: {} });
  assert.deepEqual(body, { ...minimal, logit_bias: {} });
  assert.equal(rejection({ ...minimal, logit_bias: { "42": 1 } }).details.param, "logit_bias");
});

test("stop accepts a string or up to 4 strings", () => {
  assert.equal(parse({ ...minimal, stop: "END" }).stop, "END");
  assert.deepEqual(parse({ ...minimal, stop: ["a", "b", "c", "d"] }).stop, ["a", "b", "c", "d"]);
  assert.equal(rejection({ ...minimal, stop: ["a", "b", "c", "d", "e"] }).details.param, "stop");
});

test("n is 1 to 16", () => {
  assert.equal(parse({ ...minimal, n: 3 }).n, 3);
  assert.equal(rejection({ ...minimal, n: 0 }).details.param, "n");
  assert.match(rejection({ ...minimal, n: 17 }).message, /at most 16/);
  assert.match(rejection({ ...minimal, n: 1.5 }).message, /must be an integer/);
});

const weather = {
  type: "function",
  function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } },
};

test("tools and tool_choice: a choice must name an offered tool; required needs tools", () => {
  assert.equal(parse({ ...minimal, tools: [weather], tool_choice: "required" }).tool_choice, "required");
  assert.deepEqual(
    parse({ ...minimal, tools: [weather], tool_choice: { type: "function", function: { name: "get_weather" } } }).tool_choice,
    {
      type: "function",
      function: { name: "get_weather" },
    },
  );
  assert.equal(rejection({ ...minimal, tool_choice: "required" }).details.param, "tool_choice");
  assert.match(
    rejection({ ...minimal, tools: [weather], tool_choice: { type: "function", function: { name: "nope" } } }).message,
    /'nope', which is not among the tools/,
  );
  assert.equal(
    rejection({ ...minimal, tools: [{ type: "function", function: { name: "has space" } }] }).details.param,
    "tools[0].function.name",
  );
  assert.equal(rejection({ ...minimal, tools: [{ type: "code_interpreter" }] }).details.param, "tools[0].type");
});

test("tool turns: an assistant's tool_calls and the tool's answer with its call id", () => {
  const body = parse({
    ...minimal,
    messages: [
      ...minimal.messages,
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: "{}" } }],
      },
      { role: "tool", tool_call_id: "call_1", content: "sunny" },
    ],
  });
  assert.equal(body.messages.length, 3);
  assert.equal(rejection({ ...minimal, messages: [{ role: "tool", content: "sunny" }] }).details.param, "messages[0].tool_call_id");
});

test("logprobs, response_format and reasoning_effort are checked", () => {
  assert.equal(parse({ ...minimal, logprobs: true, top_logprobs: 5 }).top_logprobs, 5);
  assert.match(rejection({ ...minimal, top_logprobs: 5 }).message, /needs logprobs/);
  assert.equal(rejection({ ...minimal, logprobs: true, top_logprobs: 21 }).details.param, "top_logprobs");
  assert.equal(
    parse({ ...minimal, response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "object" } } } }).response_format
      ?.type,
    "json_schema",
  );
  assert.equal(rejection({ ...minimal, response_format: { type: "yaml" } }).details.param, "response_format.type");
  assert.equal(parse({ ...minimal, reasoning_effort: "high" }).reasoning_effort, "high");
  assert.equal(rejection({ ...minimal, reasoning_effort: "extreme" }).details.param, "reasoning_effort");
});

test("known fields of the wrong type or range are rejected", () => {
  assert.equal(rejection({ ...minimal, temperature: 3 }).details.param, "temperature");
  assert.equal(rejection({ ...minimal, max_tokens: 0 }).details.param, "max_tokens");
  assert.equal(rejection({ ...minimal, stream: "yes" }).details.param, "stream");
  assert.equal(rejection({ ...minimal, model: "" }).details.param, "model");
});

test("a body that is not a JSON object is rejected without a param", () => {
  for (const body of [[minimal], null, undefined, "text", 42]) {
    const error = rejection(body);
    assert.equal(error.message, "the request body must be a JSON object");
    assert.equal(error.details.param, undefined);
  }
});
