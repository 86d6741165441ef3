import test from "node:test";
import assert from "node:assert/strict";
import { Status } from "nice-grpc";
import { ApiError } from "../../errors.js";
import { parseBody } from "../validation.js";
import { chatCompletionBody, contentText } from "./schema.js";

const parse = (body: unknown) => parseBody(chatCompletionBody, body);
const minimal = { model: "m1", messages: [{ role: "user", content: "hi" }] };

/** The ApiError thrown when parsing `body`. */
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
  assert.equal(rejection({ ...minimal, messages: [...minimal.messages, { role: "robot", content: "x" }] }).details.param, "messages[1].role");
});

test("text-part content is accepted and contentText joins the parts", () => {
  const body = parse({
    model: "m1",
    messages: [{ role: "user", content: [{ type: "text", text: "Hello, " }, { type: "text", text: "world" }] }],
  });
  assert.equal(contentText(body.messages[0]?.content), "Hello, world");
  assert.equal(contentText("plain"), "plain");
  assert.equal(contentText(null), "");
  assert.equal(rejection({ model: "m1", messages: [{ role: "user", content: [{ type: "image_url", image_url: {} }] }] }).details.param, "messages[0].content");
});

test("an assistant message may have null content", () => {
  const body = parse({ model: "m1", messages: [...minimal.messages, { role: "assistant", content: null }] });
  assert.equal(contentText(body.messages[1]?.content), "");
});

test("unknown top-level fields are ignored", () => {
  const body = parse({ ...minimal, logit_bias: { "42": 1 }, tools: [], service_tier: "auto" });
  assert.deepEqual(body, minimal);
});

test("stop accepts a string or up to 4 strings", () => {
  assert.equal(parse({ ...minimal, stop: "END" }).stop, "END");
  assert.deepEqual(parse({ ...minimal, stop: ["a", "b", "c", "d"] }).stop, ["a", "b", "c", "d"]);
  assert.equal(rejection({ ...minimal, stop: ["a", "b", "c", "d", "e"] }).details.param, "stop");
});

test("n > 1 is rejected as not supported", () => {
  assert.equal(parse({ ...minimal, n: 1 }).n, 1);
  const error = rejection({ ...minimal, n: 2 });
  assert.equal(error.details.param, "n");
  assert.match(error.message, /not supported/);
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
