import assert from "node:assert/strict";
import { resolve } from "node:path";
import { after, before, test } from "node:test";
import {
  ChatMessage,
  FinishReason,
  SamplingParams,
  ReasoningEffort,
  Tool,
  type ToolCall,
} from "../../../../gen/infermesh/common/v1/common.js";
import { repoRoot } from "../../../common/paths.js";
import { joinToolCall } from "../../../common/tool-call-fragments.js";
import { EngineError, type GenerationEvent, type GenerationInput, type KvBlockEvent } from "../engine.js";
import { LlamaCppEngine } from "./llamacpp-engine.js";
import { ensureTestModel } from "./test-model/generate.js";

let engine: LlamaCppEngine;
const kvEvents: KvBlockEvent[] = [];

before(async () => {
  const model = await ensureTestModel({ cacheDir: resolve(repoRoot(), ".cache/models"), size: "tiny", weightType: "f16" });
  engine = await LlamaCppEngine.load({
    modelPath: model.path,
    modelId: "test",
    description: "",
    gpu: "cpu",
    gpuIndex: undefined,
    threads: 1,
    contextTokens: 1024,
    sequences: 3,
    batchSize: 512,
  });
  engine.onKvEvent((event) => kvEvents.push(event));
});

after(() => engine.close());

function input(overrides: Partial<Omit<GenerationInput, "sampling">> & { sampling?: Partial<SamplingParams> }): GenerationInput {
  return {
    requestId: "r",
    model: "test",
    messages: [],
    prompt: undefined,
    tools: [],
    toolChoice: "",
    reasoningEffort: ReasoningEffort.REASONING_EFFORT_UNSPECIFIED,
    ...overrides,
    // The gateway always sends a bound; 16 keeps these runs short.
    sampling: SamplingParams.create({ maxTokens: 16, ...overrides.sampling }),
  };
}

const chat = (...turns: [string, string][]) => turns.map(([role, content]) => ChatMessage.create({ role, content }));

interface Run {
  started: Extract<GenerationEvent, { kind: "started" }>;
  finished: Extract<GenerationEvent, { kind: "finished" }>;
  text: string;
  deltaTokens: number;
  deltas: Extract<GenerationEvent, { kind: "delta" }>[];
  /** Tokens received when the run aborted (a delta may carry several). */
  tokensAtAbort?: number;
}

async function run(generation: GenerationInput, options: { abortAfterTokens?: number; onDelta?: () => void } = {}): Promise<Run> {
  const controller = new AbortController();
  const result: Partial<Run> = { text: "", deltaTokens: 0, deltas: [] };
  for await (const event of engine.generate(generation, controller.signal)) {
    if (event.kind === "started") result.started = event;
    else if (event.kind === "finished") result.finished = event;
    else {
      result.deltas!.push(event);
      result.text += event.text;
      result.deltaTokens! += event.tokenCount;
      options.onDelta?.();
      if (options.abortAfterTokens !== undefined && result.deltaTokens! >= options.abortAfterTokens && !controller.signal.aborted) {
        result.tokensAtAbort = result.deltaTokens!;
        controller.abort();
      }
    }
  }
  return result as Run;
}

const longSystem = "You answer questions about the infermesh serving stack, briefly and exactly. ".repeat(12);

test("a prompt that shares a prefix with a cached sequence evaluates only the rest and reports cached tokens", async () => {
  const cold = await run(input({ messages: chat(["system", longSystem], ["user", "first question"]) }));
  assert.equal(cold.started.cachedTokens, 0);
  const warm = await run(input({ messages: chat(["system", longSystem], ["user", "a second, different question"]) }));
  assert.ok(
    warm.started.cachedTokens > 0.8 * cold.started.promptTokens,
    `${warm.started.cachedTokens} of ${cold.started.promptTokens} reused`,
  );
  assert.ok(warm.started.cachedTokens < warm.started.promptTokens);
  assert.equal(warm.finished.cachedTokens, warm.started.cachedTokens);
  const load = engine.load();
  assert.ok(load.prefixCacheHits >= warm.started.cachedTokens);
  assert.ok(load.prefixCacheQueries >= cold.started.promptTokens + warm.started.promptTokens);
});

test("an unrelated prompt does not destroy a cached prefix while an empty sequence is free", async () => {
  await run(input({ messages: chat(["system", longSystem], ["user", "q1"]) }));
  await run(input({ messages: chat(["user", "something else entirely"]) }));
  const again = await run(input({ messages: chat(["system", longSystem], ["user", "q2"]) }));
  assert.ok(again.started.cachedTokens > 0.8 * again.started.promptTokens);
});

test("cancelling stops decoding within one step and ends with CANCELLED", async () => {
  const cancelled = await run(input({ messages: chat(["user", "go on for a while"]), sampling: { maxTokens: 400, temperature: 1 } }), {
    abortAfterTokens: 5,
  });
  assert.equal(cancelled.finished.finishReason, FinishReason.FINISH_REASON_CANCELLED);
  // Tokens decoded after the abort: at most the one step in flight. (On a busy machine a
  // delta can carry several tokens, so count from what had arrived, not from 5.)
  const after = cancelled.finished.completionTokens - cancelled.tokensAtAbort!;
  assert.ok(after <= 1, `${after} tokens after cancel`);
  assert.equal(engine.load().runningRequests, 0);
});

test("a new request joins the running batch instead of waiting for it to finish", async () => {
  let secondFirstTokenWhileFirstRuns = false;
  let firstDone = false;
  let firstStarted: () => void;
  const firstRunning = new Promise<void>((resolve) => (firstStarted = resolve));
  const first = run(input({ prompt: "one two three", sampling: { maxTokens: 900, temperature: 1 } }), {
    onDelta: () => firstStarted(),
  }).then((result) => {
    firstDone = true;
    return result;
  });
  await firstRunning;
  const second = await run(input({ prompt: "four five", sampling: { maxTokens: 4 } }), {
    onDelta: () => (secondFirstTokenWhileFirstRuns ||= !firstDone),
  });
  assert.equal(second.finished.completionTokens, 4);
  assert.ok(secondFirstTokenWhileFirstRuns, "the second request's first token came only after the first request ended");
  await first;
});

test("delta token counts add up to the completion tokens, and max tokens ends with LENGTH", async () => {
  for (const generation of [
    input({ prompt: "count me", sampling: { maxTokens: 12 } }),
    input({ messages: chat(["user", "count me"]), sampling: { maxTokens: 12 } }),
  ]) {
    const result = await run(generation);
    assert.equal(result.deltaTokens, result.finished.completionTokens);
    assert.equal(result.finished.completionTokens, 12);
    assert.equal(result.finished.finishReason, FinishReason.FINISH_REASON_LENGTH);
  }
});

test("a seeded request is reproducible; stop strings end the output and are not part of it", async () => {
  const sampling = { temperature: 0.9, seed: 7, maxTokens: 40 };
  const a = await run(input({ prompt: "Once upon a time", sampling }));
  const b = await run(input({ prompt: "Once upon a time", sampling }));
  assert.equal(a.text, b.text);
  const stop = a.text.slice(15, 18);
  const stopped = await run(input({ prompt: "Once upon a time", sampling: { ...sampling, stop: [stop] } }));
  assert.equal(stopped.text, a.text.slice(0, a.text.indexOf(stop)));
  assert.equal(stopped.finished.finishReason, FinishReason.FINISH_REASON_STOP);
  const chatStopped = await run(input({ messages: chat(["user", "hi"]), sampling: { ...sampling, stop: ["e"] } }));
  assert.ok(!chatStopped.text.includes("e"));
});

test("logprobs come per token with sorted alternatives", async () => {
  const result = await run(input({ messages: chat(["user", "hi"]), sampling: { maxTokens: 5, logprobs: true, topLogprobs: 3 } }));
  const logprobs = result.deltas.flatMap((delta) => delta.logprobs ?? []);
  assert.equal(logprobs.length, 5);
  for (const entry of logprobs) {
    assert.ok(entry.logprob <= 0);
    assert.equal(entry.topLogprobs.length, 3);
    assert.ok(entry.topLogprobs[0]!.logprob >= entry.topLogprobs[2]!.logprob);
    assert.equal(Buffer.from(entry.bytes).toString("utf8"), entry.token);
  }
});

test("a tiny temperature with a JSON grammar is greedy decoding, not a crash (the fuzz suite found a temperature of 3e-44 killing the worker)", async () => {
  const tiny = await run(
    input({
      messages: chat(["user", 'S]Nt"'], ["user", "GyQ"], ["user", "tWUqGmj"], ["user", "`<pI%A"]),
      sampling: {
        maxTokens: 1,
        temperature: 3.444124764752976e-44,
        topP: 0.9999999999999988,
        topK: 81,
        minP: 3.8590013631539256e-220,
        presencePenalty: 1.5136212370782225e-24,
        frequencyPenalty: -1.9999999999999982,
        logprobs: true,
        responseFormat: { format: { $case: "jsonObject", value: {} } },
      },
    }),
  );
  const greedy = await run(
    input({
      messages: chat(["user", 'S]Nt"'], ["user", "GyQ"], ["user", "tWUqGmj"], ["user", "`<pI%A"]),
      sampling: { maxTokens: 1, temperature: 0, logprobs: true, responseFormat: { format: { $case: "jsonObject", value: {} } } },
    }),
  );
  assert.equal(tiny.text, greedy.text);
});

test("a json_schema response format yields JSON matching the schema", async () => {
  const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"] };
  const result = await run(
    input({
      messages: chat(["user", "answer in JSON"]),
      sampling: {
        maxTokens: 64,
        temperature: 0,
        responseFormat: { format: { $case: "jsonSchema", value: { name: "answer", schemaJson: JSON.stringify(schema) } } },
      },
    }),
  );
  assert.equal(result.finished.finishReason, FinishReason.FINISH_REASON_STOP);
  assert.equal(typeof JSON.parse(result.text).ok, "boolean");
});

test("tool_choice required or a named tool makes the model call one, with arguments that match its schema", async () => {
  // The random test model never chooses to call a tool; "required" is what makes it.
  const weather = Tool.create({
    name: "get_weather",
    description: "Weather for a city",
    parametersJson: JSON.stringify({ type: "object", properties: { city: { enum: ["Paris", "Seoul"] } }, required: ["city"] }),
  });
  const time = Tool.create({
    name: "get_time",
    description: "Time in a zone",
    parametersJson: JSON.stringify({ type: "object", properties: { zone: { enum: ["UTC", "KST"] } }, required: ["zone"] }),
  });
  for (const [toolChoice, expected] of [
    ["required", ["get_weather", "get_time"]],
    ["get_time", ["get_time"]],
  ] as const) {
    const result = await run(
      input({
        messages: chat(["user", "what is the weather in Paris?"]),
        tools: [weather, time],
        toolChoice,
        sampling: { maxTokens: 200, temperature: 0.7, seed: 3 },
      }),
    );
    assert.equal(result.finished.finishReason, FinishReason.FINISH_REASON_TOOL_CALLS, toolChoice);
    // Fragments joined by index, as the gateway joins them.
    const calls: ToolCall[] = [];
    for (const fragment of result.deltas.flatMap((delta) => delta.toolCalls ?? [])) joinToolCall(calls, fragment);
    assert.ok(calls.length >= 1, toolChoice);
    for (const call of calls) {
      assert.ok((expected as readonly string[]).includes(call.name), `${toolChoice}: called ${call.name}`);
      assert.match(call.id, /^call_/);
      const args = JSON.parse(call.arguments) as Record<string, string>;
      assert.ok(
        call.name === "get_weather" ? ["Paris", "Seoul"].includes(args.city!) : ["UTC", "KST"].includes(args.zone!),
        call.arguments,
      );
    }
  }
});

test("bad input is refused before decoding with the precise kind", async () => {
  const refusal = async (generation: GenerationInput) => {
    try {
      await run(generation);
    } catch (error) {
      assert.ok(error instanceof EngineError);
      return error;
    }
    assert.fail("no refusal");
  };
  const tooLong = await refusal(input({ prompt: "word ".repeat(2_000) }));
  assert.equal(tooLong.kind, "invalid_argument");
  assert.match(tooLong.message, /the prompt has \d+ tokens but the model's context holds 1024/);
  assert.equal((await refusal(input({ model: "nope", prompt: "x" }))).kind, "not_found");
  assert.equal((await refusal(input({ messages: chat(["wizard", "x"]) }))).kind, "invalid_argument");
  assert.equal((await refusal(input({ prompt: "x", sampling: { topLogprobs: 21 } }))).kind, "invalid_argument");
  assert.equal(engine.load().runningRequests, 0);
});

test("tokenize and detokenize round-trip; an id outside the vocabulary is refused", async () => {
  const text = "héllo wörld, ünïcode ✓";
  assert.equal(await engine.detokenize("test", await engine.tokenize("test", text)), text);
  const chatTokens = await engine.tokenize("test", "", chat(["user", "hi"]));
  assert.ok(chatTokens.length > (await engine.tokenize("test", "hi")).length, "the template adds tokens");
  await assert.rejects(
    engine.detokenize("test", [10_000_000]),
    (error: unknown) => error instanceof EngineError && error.kind === "invalid_argument",
  );
});

test("embeddings are unit vectors, equal for equal inputs", async () => {
  const { vectors, promptTokens } = await engine.embed("test", ["the same text", "the same text", "another"], new AbortController().signal);
  assert.equal(vectors.length, 3);
  assert.ok(promptTokens > 0);
  for (const vector of vectors) assert.ok(Math.abs(Math.hypot(...vector) - 1) < 1e-6);
  assert.deepEqual(vectors[0], vectors[1]);
  assert.notDeepEqual(vectors[0], vectors[2]);
});

test("prefix blocks are announced when stored and when evicted", async () => {
  kvEvents.length = 0;
  await run(
    input({ messages: chat(["system", "a fresh system prompt that is long enough to fill some blocks. ".repeat(4)], ["user", "x"]) }),
  );
  const stored = kvEvents.flatMap((event) => event.stored);
  assert.ok(stored.length >= 3);
  assert.ok(engine.heldBlocks().length >= stored.length);
  const freed = await engine.evictIdle(Number.MAX_SAFE_INTEGER);
  assert.ok(freed > 0);
  assert.equal(engine.heldBlocks().length, 0);
  assert.equal(engine.load().kvUsedTokens, 0);
  const evicted = new Set(kvEvents.flatMap((event) => event.evicted));
  for (const hash of stored) assert.ok(evicted.has(hash));
});

test("a session's sequence is reported idle, least recently used first, and evicting it clears that sequence only", async () => {
  await engine.evictIdle(Number.MAX_SAFE_INTEGER);
  // Raw prompts that share no prefix, so each session keeps a sequence of its own.
  await run(input({ prompt: "Alpha particles are", sessionId: "alice", sampling: { maxTokens: 4 } }));
  await run(input({ prompt: "Zebras in the wild", sessionId: "bob", sampling: { maxTokens: 4 } }));
  const resident = engine.residentSessions(64);
  assert.equal(resident.count, 2);
  assert.deepEqual(
    resident.idle.map((session) => session.sessionId),
    ["alice", "bob"],
  );
  assert.ok(resident.idle.every((session) => session.kvTokens > 0));
  const freed = await engine.evictSessions(["alice"]);
  assert.equal(freed, resident.idle[0]!.kvTokens);
  assert.deepEqual(
    engine.residentSessions(64).idle.map((session) => session.sessionId),
    ["bob"],
  );
  await engine.evictIdle(Number.MAX_SAFE_INTEGER);
  assert.equal(engine.residentSessions(64).count, 0);
});
