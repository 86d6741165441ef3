import assert from "node:assert/strict";
import test from "node:test";
import { FinishReason, type ToolCall } from "../../../../gen/infermesh/common/v1/common.js";
import { joinToolCall } from "../../../common/tool-call-fragments.js";
import type { GenerationEvent } from "../engine.js";
import { StreamMapper, UpstreamStreamError } from "./stream-mapper.js";

const chunk = (delta: object, finishReason: string | null = null, extra: object = {}) => ({
  object: "chat.completion.chunk",
  choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
  ...extra,
});

function run(chunks: object[], estimatedPromptTokens = 11): GenerationEvent[] {
  const mapper = new StreamMapper({ estimatedPromptTokens, maxTokens: 64 });
  return [...chunks.flatMap((entry) => mapper.push(entry)), ...mapper.end()];
}

const deltas = (events: GenerationEvent[]) => events.filter((event) => event.kind === "delta");

test("text, then the upstream's usage: started with the estimate, finished with the real counts", () => {
  const events = run([
    chunk({ role: "assistant", content: "" }),
    chunk({ content: "Hel" }),
    chunk({ content: "lo" }),
    chunk({}, "stop"),
    {
      object: "chat.completion.chunk",
      choices: [],
      usage: {
        prompt_tokens: 17,
        completion_tokens: 2,
        total_tokens: 19,
        prompt_tokens_details: { cached_tokens: 16 },
        completion_tokens_details: { reasoning_tokens: 0 },
      },
    },
  ]);
  assert.deepEqual(events[0], { kind: "started", promptTokens: 11, cachedTokens: 0, maxTokens: 64 });
  assert.deepEqual(
    deltas(events).map((event) => event.kind === "delta" && [event.text, event.tokenCount]),
    [
      ["Hel", 1],
      ["lo", 1],
    ],
  );
  assert.deepEqual(events.at(-1), {
    kind: "finished",
    finishReason: FinishReason.FINISH_REASON_STOP,
    promptTokens: 17,
    completionTokens: 2,
    cachedTokens: 16,
    reasoningTokens: 0,
  });
});

test("continuous usage (vLLM/SGLang): started carries the upstream's prompt count, token counts follow usage", () => {
  const usage = (completion: number) => ({
    usage: { prompt_tokens: 40, completion_tokens: completion, prompt_tokens_details: { cached_tokens: 32 } },
  });
  const events = run([
    chunk({ role: "assistant", content: "" }, null, usage(0)),
    chunk({ content: "a b" }, null, usage(2)),
    chunk({ content: "c" }, "length", usage(3)),
  ]);
  assert.deepEqual(events[0], { kind: "started", promptTokens: 40, cachedTokens: 32, maxTokens: 64 });
  assert.deepEqual(
    deltas(events).map((event) => event.kind === "delta" && event.tokenCount),
    [2, 1],
  );
  const finished = events.at(-1)!;
  assert.equal(finished.kind === "finished" && finished.finishReason, FinishReason.FINISH_REASON_LENGTH);
  assert.equal(finished.kind === "finished" && finished.completionTokens, 3);
});

test("reasoning arrives as reasoning_content (SGLang, older vLLM) or reasoning (newer vLLM)", () => {
  const events = run([
    chunk({ reasoning_content: "think " }),
    chunk({ reasoning: "more" }),
    chunk({ content: "answer" }),
    chunk({}, "stop", { usage: { prompt_tokens: 5, completion_tokens: 3, completion_tokens_details: { reasoning_tokens: 2 } } }),
  ]);
  assert.deepEqual(
    deltas(events).map((event) => event.kind === "delta" && [event.text, event.reasoningText ?? ""]),
    [
      ["", "think "],
      ["", "more"],
      ["answer", ""],
    ],
  );
  const finished = events.at(-1)!;
  assert.equal(finished.kind === "finished" && finished.reasoningTokens, 2);
});

test("tool-call fragments pass on by index as they come: a call's first with its id and name, then its arguments piece by piece", () => {
  const events = run([
    chunk({ role: "assistant", content: null }),
    chunk({ tool_calls: [{ index: 0, id: "call_a", type: "function", function: { name: "get_weather", arguments: "" } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city": ' } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: '"Oslo"}' } }] }),
    chunk({ tool_calls: [{ index: 1, id: "call_b", type: "function", function: { name: "get_time", arguments: '{"tz":' } }] }),
    chunk({ tool_calls: [{ index: 1, function: { arguments: '"CET"}' } }] }),
    chunk({}, "tool_calls"),
  ]);
  const fragments = deltas(events).flatMap((event) => (event.kind === "delta" && event.toolCalls) || []);
  assert.deepEqual(fragments, [
    { index: 0, call: { id: "call_a", name: "get_weather", arguments: "" } },
    { index: 0, call: { id: "", name: "", arguments: '{"city": ' } },
    { index: 0, call: { id: "", name: "", arguments: '"Oslo"}' } },
    { index: 1, call: { id: "call_b", name: "get_time", arguments: '{"tz":' } },
    { index: 1, call: { id: "", name: "", arguments: '"CET"}' } },
  ]);
  const calls: ToolCall[] = [];
  for (const fragment of fragments) joinToolCall(calls, fragment);
  assert.deepEqual(calls, [
    { id: "call_a", name: "get_weather", arguments: '{"city": "Oslo"}' },
    { id: "call_b", name: "get_time", arguments: '{"tz":"CET"}' },
  ]);
  const finished = events.at(-1)!;
  assert.equal(finished.kind === "finished" && finished.finishReason, FinishReason.FINISH_REASON_TOOL_CALLS);
});

test("a whole tool call in one chunk (vLLM's parsers) goes out as one fragment; a call whose name never came, at the end", () => {
  const mapper = new StreamMapper({ estimatedPromptTokens: 3, maxTokens: 10 });
  const first = mapper.push(
    chunk({
      tool_calls: [
        { index: 0, id: "c1", function: { name: "f", arguments: "{}" } },
        { index: 1, id: "c2", function: { arguments: "{" } },
      ],
    }),
  );
  assert.deepEqual(
    first.flatMap((event) => (event.kind === "delta" && event.toolCalls) || []),
    [{ index: 0, call: { id: "c1", name: "f", arguments: "{}" } }],
  );
  const last = mapper.push(chunk({}, "stop"));
  assert.deepEqual(
    last.flatMap((event) => (event.kind === "delta" && event.toolCalls) || []),
    [{ index: 1, call: { id: "c2", name: "", arguments: "{" } }],
  );
});

test("chat logprobs map to TokenLogprob with the upstream's bytes and alternatives", () => {
  const events = run([
    chunk({ content: "Hi" }, null, {}),
    {
      choices: [
        {
          index: 0,
          delta: { content: "é" },
          logprobs: {
            content: [
              {
                token: "é",
                logprob: -0.25,
                bytes: [195, 169],
                top_logprobs: [
                  { token: "é", logprob: -0.25, bytes: [195, 169] },
                  { token: "e", logprob: -1.5, bytes: null },
                ],
              },
            ],
          },
          finish_reason: "stop",
        },
      ],
    },
  ]);
  const withLogprobs = deltas(events).find((event) => event.kind === "delta" && event.logprobs);
  assert.ok(withLogprobs && withLogprobs.kind === "delta");
  assert.equal(withLogprobs.tokenCount, 1);
  const [entry] = withLogprobs.logprobs!;
  assert.equal(entry!.token, "é");
  assert.equal(entry!.logprob, -0.25);
  assert.deepEqual([...entry!.bytes], [195, 169]);
  assert.deepEqual(
    entry!.topLogprobs.map((top) => [top.token, top.logprob, [...top.bytes]]),
    [
      ["é", -0.25, [195, 169]],
      ["e", -1.5, [101]],
    ],
  );
});

test("completions API: text and the legacy parallel logprob arrays", () => {
  const events = run([
    {
      object: "text_completion",
      choices: [
        {
          index: 0,
          text: " world",
          logprobs: { tokens: [" world"], token_logprobs: [-0.5], top_logprobs: [{ " there": -2, " world": -0.5 }] },
          finish_reason: null,
        },
      ],
    },
    { object: "text_completion", choices: [{ index: 0, text: "", finish_reason: "length" }] },
  ]);
  const [delta] = deltas(events);
  assert.ok(delta && delta.kind === "delta");
  assert.equal(delta.text, " world");
  assert.deepEqual(
    delta.logprobs!.map((entry) => [entry.token, entry.logprob, entry.topLogprobs.map((top) => top.token)]),
    [[" world", -0.5, [" world", " there"]]],
  );
  const finished = events.at(-1)!;
  assert.equal(finished.kind === "finished" && finished.finishReason, FinishReason.FINISH_REASON_LENGTH);
  assert.equal(finished.kind === "finished" && finished.completionTokens, 1);
});

test("error chunks throw with the upstream's message and status; a stream without a finish is an error", () => {
  const mapper = new StreamMapper({ estimatedPromptTokens: 1, maxTokens: 1 });
  assert.throws(
    () => mapper.push({ error: { message: "context too long", type: "BadRequestError", code: 400 } }),
    (error: unknown) => error instanceof UpstreamStreamError && error.status === 400 && error.message === "context too long",
  );
  assert.throws(
    () => new StreamMapper({ estimatedPromptTokens: 1, maxTokens: 1 }).push({ object: "error", message: "boom", code: 500 }),
    (error: unknown) => error instanceof UpstreamStreamError && error.status === 500,
  );
  const unfinished = new StreamMapper({ estimatedPromptTokens: 1, maxTokens: 1 });
  unfinished.push(chunk({ content: "x" }));
  assert.throws(() => unfinished.end(), /before the generation finished/);
});

test("a cancelled generation finishes CANCELLED with the tokens streamed so far", () => {
  const mapper = new StreamMapper({ estimatedPromptTokens: 9, maxTokens: 50 });
  mapper.push(chunk({ content: "a" }));
  mapper.push(chunk({ content: "b" }));
  assert.deepEqual(mapper.cancelled(), {
    kind: "finished",
    finishReason: FinishReason.FINISH_REASON_CANCELLED,
    promptTokens: 9,
    completionTokens: 2,
    cachedTokens: 0,
    reasoningTokens: 0,
  });
});
