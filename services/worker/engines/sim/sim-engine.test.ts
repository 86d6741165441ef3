import { test } from "node:test";
import assert from "node:assert/strict";
import { ChatMessage, FinishReason, ReasoningEffort, SamplingParams, Tool } from "../../../../gen/infermesh/common/v1/common.js";
import { ManualClock } from "../../../common/clock.js";
import { blockHashes, canonicalPrompt } from "../../../common/prefix-hash.js";
import { EngineError, type GenerationEvent, type GenerationInput, type KvBlockEvent } from "../engine.js";
import { SimEngine } from "./sim-engine.js";
import type { SimOptionsInput } from "./sim-options.js";

/** A GPU whose step is 20 ms + 10 ms per decoding sequence, and prefill 1 ms per token. */
const linearGpu: SimOptionsInput = {
  decodeFixedMs: 20,
  decodeExpertReadMs: 0,
  decodeMsPerSequence: 10,
  decodeMsPer1kKvTokens: 0,
  prefillTokensPerSecond: 1000,
  contextTokens: 1024,
  kvCapacityTokens: 4096,
  maxBatch: 4,
  maxBatchTokens: 4096,
  answerTokensMin: 8,
  answerTokensMax: 8,
  maxTokensPerDelta: 1,
};

function setup(options: SimOptionsInput = {}) {
  const clock = new ManualClock();
  const engine = SimEngine.create({ ...linearGpu, ...options }, clock);
  const kvEvents: KvBlockEvent[] = [];
  engine.onKvEvent((event) => kvEvents.push(event));
  return { clock, engine, kvEvents, model: engine.models()[0]!.id };
}

function input(
  model: string,
  content: string | { role: string; content: string }[],
  sampling: Partial<SamplingParams> = {},
  extra: Partial<GenerationInput> = {},
): GenerationInput {
  const raw = typeof content === "string";
  return {
    requestId: "r1",
    model,
    messages: raw ? [] : content.map((message) => ChatMessage.create(message)),
    prompt: raw ? content : undefined,
    sampling: SamplingParams.create(sampling),
    tools: [],
    toolChoice: "",
    reasoningEffort: ReasoningEffort.REASONING_EFFORT_UNSPECIFIED,
    ...extra,
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

/** Moves the clock 1 ms at a time, letting consumers read what each step produced. */
async function advance(clock: ManualClock, ms: number): Promise<void> {
  await settle();
  for (let elapsed = 0; elapsed < ms; elapsed += 1) {
    clock.advance(1);
    await settle();
  }
}

/** Runs a generation in the background, recording each event with the time it arrived. */
function start(engine: SimEngine, clock: ManualClock, request: GenerationInput, signal = new AbortController().signal) {
  const run = { events: [] as { at: number; event: GenerationEvent }[], error: undefined as unknown, ended: false };
  void (async () => {
    try {
      for await (const event of engine.generate(request, signal)) run.events.push({ at: clock.now(), event });
    } catch (error) {
      run.error = error;
    }
    run.ended = true;
  })();
  return run;
}

/** All events of a generation, on an engine whose time costs nothing. */
async function collect(engine: SimEngine, request: GenerationInput): Promise<GenerationEvent[]> {
  const events: GenerationEvent[] = [];
  for await (const event of engine.generate(request, new AbortController().signal)) events.push(event);
  return events;
}

const deltas = (events: readonly GenerationEvent[]) => events.filter((event) => event.kind === "delta");
const textOf = (events: readonly GenerationEvent[]) =>
  deltas(events)
    .map((event) => event.text)
    .join("");
const finishOf = (events: readonly GenerationEvent[]) => events.find((event) => event.kind === "finished")!;
const startOf = (events: readonly GenerationEvent[]) => events.find((event) => event.kind === "started")!;
const deltaTimes = (run: { events: { at: number; event: GenerationEvent }[] }) =>
  run.events.filter(({ event }) => event.kind === "delta").map(({ at }) => at);
const gaps = (times: number[]) => times.slice(1).map((time, index) => time - times[index]!);

test("a decode step takes longer the more sequences share it, as configured", async () => {
  const alone = setup();
  const single = start(alone.engine, alone.clock, input(alone.model, "x".repeat(40)));
  await advance(alone.clock, 300);
  // 10 prompt tokens: 20 ms + 10 ms prefill brings the first token; then 20 + 10 × 1 per token.
  assert.equal(deltaTimes(single)[0], 30);
  assert.deepEqual(gaps(deltaTimes(single)), Array(7).fill(30));

  const shared = setup();
  const three = [0, 1, 2].map((index) => start(shared.engine, shared.clock, input(shared.model, `${index}`.repeat(40))));
  await advance(shared.clock, 500);
  for (const run of three) {
    assert.equal(deltaTimes(run)[0], 50, "three prompts of 10 tokens prefill together");
    assert.deepEqual(gaps(deltaTimes(run)), Array(7).fill(50), "20 + 10 × 3 ms per step");
  }
});

test("timeScale 0.5 runs twice as fast as the GPU; timeScale 0 costs no time at all", async () => {
  const half = setup({ timeScale: 0.5 });
  const run = start(half.engine, half.clock, input(half.model, "x".repeat(40)));
  await advance(half.clock, 200);
  assert.equal(deltaTimes(run)[0], 15);
  assert.deepEqual(gaps(deltaTimes(run)), Array(7).fill(15));

  const free = setup({ timeScale: 0, maxTokensPerDelta: 16, answerTokensMin: 40, answerTokensMax: 40 });
  const events = await collect(free.engine, input(free.model, "x".repeat(40)));
  assert.equal(free.clock.now(), 0);
  assert.deepEqual(
    deltas(events).map((event) => event.tokenCount),
    [16, 16, 8],
    "tokens come 16 to a delta",
  );
  assert.equal(finishOf(events).completionTokens, 40);
});

test("wakeIntervalMs wakes the scheduler less often: tokens come in fewer deltas, on the same simulated schedule", async () => {
  const { clock, engine, model } = setup({ wakeIntervalMs: 100, maxTokensPerDelta: 16 });
  const run = start(engine, clock, input(model, "x".repeat(40)));
  await advance(clock, 400);
  // Steps end at 30, 60, ... 240 ms as before; the scheduler looks every 100 ms.
  const tokenDeltas = run.events.filter(({ event }) => event.kind === "delta");
  assert.deepEqual(
    tokenDeltas.map(({ event }) => event.kind === "delta" && event.tokenCount),
    [3, 3, 2],
  );
  assert.deepEqual(
    tokenDeltas.map(({ at }) => at),
    [100, 200, 300],
  );
});

test("the H100 presets' step time grows as the batch touches more experts and holds more KV", async () => {
  const { stepDurationMs } = await import("./timing.js");
  const { simOptionsSchema } = await import("./sim-options.js");
  for (const preset of ["h100-gpt-oss-20b", "h100-gpt-oss-120b"] as const) {
    const figures = simOptionsSchema.parse({ preset });
    const step = (decodingSequences: number, contextTokens = 2048) =>
      stepDurationMs(figures, { decodingSequences, decodingKvTokens: decodingSequences * contextTokens, prefillTokens: 0 });
    assert.ok(step(1) < step(8) && step(8) < step(64) && step(64) < step(256), preset);
    assert.ok(step(64, 8192) > step(64, 1024), preset);
    // Batching pays: 256 sequences get far more tokens per second than one.
    assert.ok(256 / step(256) > 20 / step(1), preset);
  }
});

test("a prompt sharing a long prefix with an earlier one reports cachedTokens and gets its first token sooner", async () => {
  const { clock, engine, kvEvents, model } = setup();
  const system = { role: "system", content: "You are a simulated assistant. ".repeat(20) };
  const first = input(model, [system, { role: "user", content: "first question" }]);
  const second = input(model, [system, { role: "user", content: "second question" }]);

  const one = start(engine, clock, first);
  await advance(clock, 600);
  assert.equal(finishOf(one.events.map(({ event }) => event)).finishReason, FinishReason.FINISH_REASON_STOP);
  // The router computes the same hashes from the request.
  const firstHashes = blockHashes(canonicalPrompt(first));
  assert.deepEqual(kvEvents.flatMap((event) => event.stored).slice(0, firstHashes.length), firstHashes);

  const startedAt = clock.now();
  const two = start(engine, clock, second);
  await advance(clock, 600);
  const started = startOf(two.events.map(({ event }) => event));
  const sharedChars = canonicalPrompt(first).length - "first question\u001e".length;
  assert.equal(started.kind === "started" && started.cachedTokens, Math.floor(sharedChars / 64) * 16);
  const promptTokens = (run: typeof one) => (startOf(run.events.map(({ event }) => event)) as { promptTokens: number }).promptTokens;
  const cachedTokens = started.kind === "started" ? started.cachedTokens : 0;
  // First token: the 20 ms step plus 1 ms per prompt token computed.
  assert.equal(deltaTimes(one)[0], 20 + promptTokens(one));
  assert.equal(deltaTimes(two)[0]! - startedAt, 20 + promptTokens(two) - cachedTokens);
  assert.ok(cachedTokens > promptTokens(two) * 0.8);

  const load = engine.load();
  assert.equal(load.prefixCacheQueries, promptTokens(one) + promptTokens(two));
  assert.equal(load.prefixCacheHits, started.kind === "started" ? started.cachedTokens : -1);
});

test("the next turn of a conversation reuses the answer's KV too", async () => {
  const { engine, model } = setup({ timeScale: 0, answerTokensMin: 64, answerTokensMax: 64 });
  const turn = [{ role: "user", content: "tell me something long" }];
  const answer = textOf(await collect(engine, input(model, turn)));
  const next = [...turn, { role: "assistant", content: answer }, { role: "user", content: "and then?" }];
  const started = startOf(await collect(engine, input(model, next)));
  const beyondFirstPrompt = canonicalPrompt({ messages: turn }).length / 4;
  assert.ok(started.kind === "started" && started.cachedTokens > beyondFirstPrompt + 32);
});

test("when KV is full, a request waits; it starts once a finished one's blocks are evicted, tails first", async () => {
  // 16 blocks of 16 tokens; each 160-token prompt needs 11 with its first output token.
  const { clock, engine, kvEvents, model } = setup({ contextTokens: 256, kvCapacityTokens: 256 });
  const promptA = "a".repeat(640);
  const a = start(engine, clock, input(model, promptA));
  const b = start(engine, clock, input(model, "b".repeat(640)));
  await advance(clock, 100);
  assert.equal(engine.load().runningRequests, 1);
  assert.equal(engine.load().waitingRequests, 1);
  assert.equal(b.events.length, 0, "no started event while queued");

  await advance(clock, 400);
  const aFinishedAt = a.events.at(-1)!.at;
  assert.equal(a.events.at(-1)!.event.kind, "finished");
  assert.equal(b.events[0]!.event.kind, "started");
  assert.equal(b.events[0]!.at, aFinishedAt, "b joins at the step boundary where a left");

  // a's 10 prompt blocks stayed cached; b needed 5 of them back, the last five.
  const hashesA = blockHashes(promptA);
  const evicted = kvEvents.flatMap((event) => event.evicted);
  assert.deepEqual(new Set(evicted), new Set(hashesA.slice(5)));
  const again = start(engine, clock, input(model, promptA));
  await advance(clock, 600);
  assert.equal(
    (startOf(again.events.map(({ event }) => event)) as { cachedTokens: number }).cachedTokens,
    80,
    "a's first five blocks are still cached",
  );
});

test("idle cached prefixes are counted, and evictIdle drops them and reports the evicted blocks", async () => {
  const { engine, kvEvents, model } = setup({ timeScale: 0 });
  const prompt = "p".repeat(640);
  await collect(engine, input(model, prompt));
  // Idle cached blocks count as free, as in vLLM's kv_cache_usage: taking them back costs nothing.
  assert.deepEqual([engine.load().idleSequences, engine.load().kvUsedTokens], [1, 0]);
  kvEvents.length = 0;
  assert.equal(await engine.evictIdle(1000), 160);
  assert.deepEqual(new Set(kvEvents.flatMap((event) => event.evicted)), new Set(blockHashes(prompt)));
  assert.equal(engine.load().idleSequences, 0);
  const cachedTokens = async () => (startOf(await collect(engine, input(model, prompt))) as { cachedTokens: number }).cachedTokens;
  assert.equal(await cachedTokens(), 0, "evicted blocks are computed again");
  assert.equal(await cachedTokens(), 144, "all but the last block, which is always computed");
});

test("a sequence that outgrows the KV preempts the newest one, which resumes and completes", async () => {
  // 16 blocks; two 100-token prompts growing to 200 tokens each need 26. Steps of 1 ms.
  const { clock, engine, model } = setup({
    contextTokens: 256,
    kvCapacityTokens: 256,
    decodeFixedMs: 1,
    decodeMsPerSequence: 0,
    prefillTokensPerSecond: 1e9,
    answerTokensMin: 100,
    answerTokensMax: 100,
  });
  const a = start(engine, clock, input(model, "a".repeat(400), { maxTokens: 100 }));
  const b = start(engine, clock, input(model, "b".repeat(400), { maxTokens: 100 }));
  let mostWaiting = 0;
  for (let elapsed = 0; elapsed < 400; elapsed += 1) {
    await advance(clock, 1);
    mostWaiting = Math.max(mostWaiting, engine.load().waitingRequests);
  }
  assert.equal(mostWaiting, 1, "b was preempted");
  for (const run of [a, b]) {
    const events = run.events.map(({ event }) => event);
    assert.equal(finishOf(events).completionTokens, 100);
    assert.equal(
      deltas(events).reduce((sum, event) => sum + event.tokenCount, 0),
      100,
    );
    assert.equal(events.filter((event) => event.kind === "started").length, 1);
  }
  assert.ok(deltaTimes(b).at(-1)! > deltaTimes(a).at(-1)!, "b finished after a, having recomputed");
  assert.deepEqual([engine.load().runningRequests, engine.load().waitingRequests, engine.load().idleSequences], [0, 0, 2]);
});

test("queued requests start by priority class, first come first served within one", async () => {
  const { clock, engine, model } = setup({ maxBatch: 1, answerTokensMin: 20, answerTokensMax: 20 });
  const a = start(engine, clock, input(model, "a".repeat(40), {}, { priority: "interactive" }));
  const b = start(engine, clock, input(model, "b".repeat(40), {}, { priority: "batch" }));
  const c = start(engine, clock, input(model, "c".repeat(40), {}, { priority: "standard" }));
  const d = start(engine, clock, input(model, "d".repeat(40), {}, { priority: "standard" }));
  await advance(clock, 4_000);
  const startedAt = (run: ReturnType<typeof start>) => run.events.find(({ event }) => event.kind === "started")!.at;
  const finishedAt = (run: ReturnType<typeof start>) => run.events.at(-1)!.at;
  assert.ok([a, b, c, d].every((run) => run.events.at(-1)?.event.kind === "finished"));
  assert.equal(startedAt(c), finishedAt(a), "standard c takes the slot a freed, ahead of batch b that came before it");
  assert.equal(startedAt(d), finishedAt(c), "then d, the next standard");
  assert.equal(startedAt(b), finishedAt(d), "batch last");
});

test("a more urgent request that does not fit preempts the least urgent running one, which resumes and completes", async () => {
  const { clock, engine, model } = setup({ maxBatch: 1, answerTokensMin: 40, answerTokensMax: 40 });
  const bulk = start(engine, clock, input(model, "b".repeat(40), {}, { priority: "batch" }));
  await advance(clock, 200);
  const person = start(engine, clock, input(model, "p".repeat(40), {}, { priority: "interactive" }));
  await advance(clock, 100);
  assert.equal(
    person.events[0]?.event.kind,
    "started",
    "the interactive request started within a few steps, not after the batch one's 40 tokens",
  );
  assert.equal(engine.load().waitingRequests, 1, "the batch one waits to recompute");
  const same = start(engine, clock, input(model, "s".repeat(40), {}, { priority: "interactive" }));
  await advance(clock, 100);
  assert.equal(same.events.length, 0, "a request as urgent as the running one does not preempt it");
  await advance(clock, 6_000);
  for (const run of [bulk, person, same]) {
    const events = run.events.map(({ event }) => event);
    assert.equal(finishOf(events).completionTokens, 40);
    assert.equal(events.filter((event) => event.kind === "started").length, 1);
  }
  assert.ok(bulk.events.at(-1)!.at > same.events.at(-1)!.at, "the batch request finished last");
});

test("prompt chunks of more urgent classes are computed first within a step's token budget", async () => {
  // 100 tokens a step: the 500-token batch prompt, first come, would take every step's budget until its fifth.
  const { clock, engine, model } = setup({ maxBatchTokens: 100, contextTokens: 2048, kvCapacityTokens: 8192 });
  const bulk = start(engine, clock, input(model, "b".repeat(2_000), {}, { priority: "batch" }));
  await advance(clock, 1);
  const person = start(engine, clock, input(model, "p".repeat(200), {}, { priority: "interactive" }));
  await advance(clock, 1_500);
  const firstDelta = (run: ReturnType<typeof start>) => deltaTimes(run)[0]!;
  // Step 1 (0–120 ms): 100 batch prompt tokens. Step 2: the interactive prompt's 50 first, then 50 of the batch one's.
  assert.equal(firstDelta(person), 240);
  assert.ok(firstDelta(bulk) > firstDelta(person));
  assert.equal(finishOf(bulk.events.map(({ event }) => event)).completionTokens, 8);
});

test("cancelling a running generation ends it within one step and frees its slot; cancelling a queued one removes it at once", async () => {
  const { clock, engine, model } = setup({ maxBatch: 1, answerTokensMin: 100, answerTokensMax: 100 });
  const abortA = new AbortController();
  const a = start(engine, clock, input(model, "a".repeat(40)), abortA.signal);
  const b = start(engine, clock, input(model, "b".repeat(40)));
  const abortC = new AbortController();
  const c = start(engine, clock, input(model, "c".repeat(40)), abortC.signal);
  await advance(clock, 95);
  assert.equal(engine.load().waitingRequests, 2);

  abortC.abort();
  await settle();
  assert.equal(c.ended, true);
  assert.equal((c.error as Error).name, "AbortError", "a queued generation throws the abort reason");
  assert.equal(engine.load().waitingRequests, 1);

  abortA.abort();
  const abortedAt = clock.now();
  await advance(clock, 30);
  const last = a.events.at(-1)!;
  assert.equal(last.event.kind === "finished" && last.event.finishReason, FinishReason.FINISH_REASON_CANCELLED);
  assert.ok(last.at - abortedAt <= 30, "within one 30 ms step");
  assert.equal(b.events[0]!.event.kind, "started");
  assert.equal(b.events[0]!.at, last.at, "the freed slot is taken at once");
});

test("the same seed gives the same text; another seed, another text; no seed uses the engine's", async () => {
  const { engine, model } = setup({ timeScale: 0 });
  const request = (seed?: number) => input(model, "Write me a poem.", { seed, maxTokens: 64 });
  const seven = textOf(await collect(engine, request(7)));
  assert.equal(textOf(await collect(engine, request(7))), seven);
  assert.notEqual(textOf(await collect(engine, request(8))), seven);
  const unseeded = textOf(await collect(engine, request()));
  assert.equal(textOf(await collect(SimEngine.create({ ...linearGpu, timeScale: 0 }), request())), unseeded);
  assert.notEqual(textOf(await collect(SimEngine.create({ ...linearGpu, timeScale: 0, seed: 1 }), request())), unseeded);
});

test("a stop string ends the answer before it, with reason STOP", async () => {
  const { engine, model } = setup({ timeScale: 0, answerTokensMin: 40, answerTokensMax: 40 });
  const full = textOf(await collect(engine, input(model, "Count.", { seed: 3 })));
  const stop = full.slice(20, 28);
  const events = await collect(engine, input(model, "Count.", { seed: 3, stop: [stop] }));
  assert.equal(textOf(events), full.slice(0, full.indexOf(stop)));
  assert.equal(finishOf(events).finishReason, FinishReason.FINISH_REASON_STOP);
  assert.ok(finishOf(events).completionTokens < 40);
});

test("max_tokens bounds the answer with reason LENGTH", async () => {
  const { engine, model } = setup({ timeScale: 0, answerTokensMin: 40, answerTokensMax: 40 });
  const events = await collect(engine, input(model, "Go on.", { maxTokens: 5 }));
  assert.equal(finishOf(events).finishReason, FinishReason.FINISH_REASON_LENGTH);
  assert.equal(finishOf(events).completionTokens, 5);
  assert.equal(startOf(events).kind === "started" && startOf(events).maxTokens, 5);
});

const weather = Tool.create({
  name: "get_weather",
  description: "Weather for a city",
  parametersJson: JSON.stringify({
    type: "object",
    properties: { city: { type: "string" }, days: { type: "integer", minimum: 1 }, unit: { enum: ["c", "f"] }, note: { type: "string" } },
    required: ["city", "days", "unit"],
  }),
});
const search = Tool.create({
  name: "search",
  description: "Web search",
  parametersJson: JSON.stringify({ type: "object", properties: { query: { type: "string" } }, required: ["query"] }),
});

test("with tools the model calls one: whole calls with JSON arguments that fill the required parameters", async () => {
  const { engine, model } = setup({ timeScale: 0 });
  const chat = [{ role: "user", content: "Weather in Paris?" }];
  for (const toolChoice of ["required", "auto", "get_weather"]) {
    const events = await collect(engine, input(model, chat, {}, { tools: [weather], toolChoice }));
    const calls = deltas(events).flatMap((event) => (event.toolCalls ?? []).map((fragment) => fragment.call!));
    assert.equal(calls.length, 1, toolChoice);
    assert.equal(calls[0]!.name, "get_weather");
    assert.match(calls[0]!.id, /^call_/);
    const args = JSON.parse(calls[0]!.arguments);
    assert.equal(typeof args.city, "string");
    assert.ok(Number.isInteger(args.days) && args.days >= 1);
    assert.equal(args.unit, "c");
    assert.equal(finishOf(events).finishReason, FinishReason.FINISH_REASON_TOOL_CALLS);
    assert.ok(finishOf(events).completionTokens > 0);
  }
  const named = await collect(engine, input(model, chat, {}, { tools: [weather, search], toolChoice: "search" }));
  assert.equal(deltas(named).flatMap((event) => event.toolCalls ?? [])[0]!.call!.name, "search");

  const none = await collect(engine, input(model, chat, {}, { tools: [weather], toolChoice: "none" }));
  assert.equal(deltas(none).flatMap((event) => event.toolCalls ?? []).length, 0);
  assert.notEqual(textOf(none), "");
  assert.notEqual(finishOf(none).finishReason, FinishReason.FINISH_REASON_TOOL_CALLS);

  await assert.rejects(
    collect(engine, input(model, chat, {}, { tools: [weather], toolChoice: "nope" })),
    (error: unknown) => error instanceof EngineError && error.kind === "invalid_argument",
  );
});

test("response_format json_schema gives JSON with the schema's required properties; json_object gives an object", async () => {
  const { engine, model } = setup({ timeScale: 0 });
  const schema = {
    type: "object",
    properties: {
      name: { type: "string", minLength: 5 },
      age: { type: "integer", minimum: 18 },
      score: { type: "number" },
      active: { type: "boolean" },
      tags: { type: "array", items: { type: "string" }, minItems: 2 },
      address: { $ref: "#/$defs/address" },
      nickname: { type: "string" },
    },
    required: ["name", "age", "score", "active", "tags", "address"],
    $defs: { address: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
  };
  const format = { format: { $case: "jsonSchema" as const, value: { name: "person", schemaJson: JSON.stringify(schema) } } };
  const events = await collect(engine, input(model, "Describe a person.", { responseFormat: format, maxTokens: 200 }));
  const value = JSON.parse(textOf(events));
  assert.ok(typeof value.name === "string" && value.name.length >= 5);
  assert.ok(Number.isInteger(value.age) && value.age >= 18);
  assert.equal(typeof value.score, "number");
  assert.equal(typeof value.active, "boolean");
  assert.ok(Array.isArray(value.tags) && value.tags.length === 2 && value.tags.every((tag: unknown) => typeof tag === "string"));
  assert.equal(typeof value.address.city, "string");
  assert.equal(finishOf(events).finishReason, FinishReason.FINISH_REASON_STOP);

  const object = await collect(
    engine,
    input(model, "Anything.", { responseFormat: { format: { $case: "jsonObject", value: {} } }, maxTokens: 1000 }),
  );
  const parsed = JSON.parse(textOf(object));
  assert.equal(typeof parsed, "object");
  assert.ok(!Array.isArray(parsed) && parsed !== null);
});

test("logprobs: one entry per answer token, with top_logprobs alternatives best first", async () => {
  const { engine, model } = setup({ timeScale: 0, maxTokensPerDelta: 4, answerTokensMin: 100, answerTokensMax: 100 });
  const events = await collect(engine, input(model, "Hi.", { logprobs: true, topLogprobs: 3, maxTokens: 12 }));
  let entries = 0;
  for (const delta of deltas(events)) {
    assert.equal(delta.logprobs?.length, delta.tokenCount);
    assert.equal(delta.logprobs!.map((entry) => entry.token).join(""), delta.text);
    for (const entry of delta.logprobs!) {
      entries += 1;
      assert.ok(entry.logprob <= 0);
      assert.deepEqual(entry.bytes, Buffer.from(entry.token));
      assert.equal(entry.topLogprobs.length, 3);
      assert.equal(entry.topLogprobs[0]!.token, entry.token);
      const values = entry.topLogprobs.map((top) => top.logprob);
      assert.deepEqual(
        values,
        [...values].sort((x, y) => y - x),
      );
      assert.equal(new Set(entry.topLogprobs.map((top) => top.token)).size, 3);
      assert.ok(values.reduce((sum, logprob) => sum + Math.exp(logprob), 0) <= 1 + 1e-9);
    }
  }
  assert.equal(entries, 12);
  await assert.rejects(
    collect(engine, input(model, "Hi.", { logprobs: true, topLogprobs: 21 })),
    (error: unknown) => error instanceof EngineError && error.kind === "invalid_argument",
  );
});

test("reasoning effort: reasoning deltas first, more for higher effort, counted in reasoningTokens", async () => {
  const { engine, model } = setup({ timeScale: 0, maxTokensPerDelta: 8, reasoningTokensLow: 8, reasoningTokensHigh: 32 });
  const run = (reasoningEffort: ReasoningEffort) =>
    collect(engine, input(model, [{ role: "user", content: "Why?" }], { maxTokens: 100 }, { reasoningEffort }));
  const low = await run(ReasoningEffort.REASONING_EFFORT_LOW);
  const high = await run(ReasoningEffort.REASONING_EFFORT_HIGH);
  assert.equal(finishOf(low).reasoningTokens, 8);
  assert.equal(finishOf(high).reasoningTokens, 32);
  const highDeltas = deltas(high);
  assert.ok(highDeltas.slice(0, 4).every((delta) => delta.reasoningText && delta.text === ""));
  assert.ok(highDeltas.slice(4).every((delta) => !delta.reasoningText && delta.text !== ""));
  assert.equal(finishOf(await run(ReasoningEffort.REASONING_EFFORT_UNSPECIFIED)).reasoningTokens, 0);
});

test("a prompt longer than the context is refused before any event, naming both lengths; an unknown model is not found", async () => {
  const { engine, model } = setup();
  const iterator = engine.generate(input(model, "x".repeat(5000)), new AbortController().signal)[Symbol.asyncIterator]();
  await assert.rejects(
    iterator.next(),
    (error: unknown) =>
      error instanceof EngineError && error.kind === "invalid_argument" && /1250/.test(error.message) && /1024/.test(error.message),
  );
  await assert.rejects(
    collect(engine, input("gpt-4", "hi")),
    (error: unknown) => error instanceof EngineError && error.kind === "not_found",
  );
  assert.equal(engine.load().waitingRequests + engine.load().runningRequests, 0);
});

test("tokenize: 4 characters a token; generated text round-trips; unknown ids are refused", async () => {
  const { engine, model } = setup({ timeScale: 0, answerTokensMin: 100, answerTokensMax: 100 });
  const text = textOf(await collect(engine, input(model, "Say something.", { maxTokens: 30 })));
  const ids = await engine.tokenize(model, text);
  assert.equal(ids.length, 30);
  assert.equal(await engine.detokenize(model, ids), text);
  assert.equal((await engine.tokenize(model, "héllo wörld, naïve café")).length, Math.ceil("héllo wörld, naïve café".length / 4));
  const messages = [ChatMessage.create({ role: "user", content: "hello" })];
  assert.equal((await engine.tokenize(model, "", messages)).length, Math.ceil(canonicalPrompt({ messages }).length / 4));
  const [opaque] = await engine.tokenize(model, "日本語です");
  await assert.rejects(
    engine.detokenize(model, [opaque!]),
    (error: unknown) => error instanceof EngineError && error.kind === "invalid_argument",
  );
  await assert.rejects(
    engine.detokenize(model, [-1]),
    (error: unknown) => error instanceof EngineError && error.kind === "invalid_argument",
  );
});

test("embeddings are unit vectors of the configured size, the same for the same text", async () => {
  const { engine, model } = setup({ embeddingDimensions: 32 });
  const { vectors, promptTokens } = await engine.embed(model, ["alpha", "beta", "alpha"], new AbortController().signal);
  assert.equal(promptTokens, 2 + 1 + 2);
  assert.equal(vectors[0]!.length, 32);
  for (const vector of vectors) assert.ok(Math.abs(Math.hypot(...vector) - 1) < 1e-9);
  assert.deepEqual(vectors[0], vectors[2]);
  assert.notDeepEqual(vectors[0], vectors[1]);
});

test("load() counts running and waiting requests and KV; listeners hear when requests start and end", async () => {
  const { clock, engine, model } = setup({ maxBatch: 1 });
  let changes = 0;
  engine.onLoadChange(() => (changes += 1));
  const a = start(engine, clock, input(model, "a".repeat(40)));
  start(engine, clock, input(model, "b".repeat(40)));
  await advance(clock, 1);
  assert.deepEqual(
    { running: engine.load().runningRequests, waiting: engine.load().waitingRequests, kv: engine.load().kvUsedTokens },
    { running: 1, waiting: 1, kv: 16 },
  );
  assert.ok(changes >= 2);
  assert.equal(engine.device, "sim:h100");
  assert.equal(engine.maxSequences, 1);
  await advance(clock, 300);
  assert.equal(a.events.at(-1)!.event.kind, "finished");
  assert.ok(engine.load().tokensPerSecond > 0);
  assert.deepEqual(engine.models(), [
    { id: "sim-gpt-oss-20b", engine: "sim", contextTokens: 1024, description: engine.models()[0]!.description },
  ]);
  assert.match(engine.models()[0]!.description, /synthetic/);
});

test("close() ends running generations CANCELLED, fails queued ones and refuses new ones as unavailable", async () => {
  const { clock, engine, model } = setup({ maxBatch: 1, answerTokensMin: 100, answerTokensMax: 100 });
  const running = start(engine, clock, input(model, "a".repeat(40)));
  const queued = start(engine, clock, input(model, "b".repeat(40)));
  await advance(clock, 50);
  await engine.close();
  await settle();
  const last = running.events.at(-1)!.event;
  assert.equal(last.kind === "finished" && last.finishReason, FinishReason.FINISH_REASON_CANCELLED);
  assert.ok(queued.error instanceof EngineError && queued.error.kind === "unavailable");
  await assert.rejects(
    collect(engine, input(model, "c")),
    (error: unknown) => error instanceof EngineError && error.kind === "unavailable",
  );
});

test("sessions' KV is tracked: idle sessions least recently used first, and evicting one frees only what it alone holds", async () => {
  const { engine, model, clock } = setup({ timeScale: 0 });
  const system = { role: "system", content: "s".repeat(640) }; // 10 shared blocks
  const turn = (sessionId: string, question: string) =>
    collect(engine, input(model, [system, { role: "user", content: question }], {}, { sessionId }));
  await turn("alice", "a".repeat(320));
  clock.advance(1_000);
  await turn("bob", "b".repeat(320));
  await collect(engine, input(model, [system, { role: "user", content: "c".repeat(320) }])); // no session

  const resident = engine.residentSessions(64);
  assert.equal(resident.count, 2);
  assert.deepEqual(
    resident.idle.map((session) => session.sessionId),
    ["alice", "bob"],
    "least recently used first",
  );
  const [alice, bob] = resident.idle;
  assert.ok(alice!.idleMs >= 1_000 && bob!.idleMs < alice!.idleMs);
  // Each holds its question and answer beyond the shared system prompt, not the prompt itself.
  assert.ok(alice!.kvTokens > 0 && alice!.kvTokens < 10 * 16 + 20 * 16, `alice holds ${alice!.kvTokens}`);

  assert.deepEqual(engine.residentSessions(0), { count: 2, idle: [] }, "the list only when asked for");
  assert.equal(await engine.evictSessions(["alice", "nobody"]), alice!.kvTokens);
  assert.deepEqual(
    engine.residentSessions(64).idle.map((session) => session.sessionId),
    ["bob"],
  );
  const cachedOf = async (sessionId: string, question: string) =>
    (startOf(await turn(sessionId, question)) as { cachedTokens: number }).cachedTokens;
  assert.equal(
    await cachedOf("carol", "a".repeat(320)),
    160,
    "the shared system prompt (10 blocks) is still cached; alice's own blocks are not",
  );
  assert.ok((await cachedOf("dave", "b".repeat(320))) > 160, "bob's blocks stay");
});

test("load() reports the prefill still to do: the batch's prompt chunks left and each queued prompt's uncached part", async () => {
  // One sequence at a time, 64 prompt tokens a step: a 160-token prompt takes three steps.
  const { clock, engine, model } = setup({ maxBatch: 1, maxBatchTokens: 64 });
  const promptA = "a".repeat(640);
  start(engine, clock, input(model, promptA));
  start(engine, clock, input(model, "b".repeat(640)));
  await settle();
  assert.equal(engine.load().pendingPrefillTokens, 320, "all of a in the batch, all of b queued");
  await advance(clock, 20 + 64 + 1);
  assert.equal(engine.load().pendingPrefillTokens, 256, "one chunk of a done");
  await advance(clock, 2_000);
  assert.equal(engine.load().pendingPrefillTokens, 0);
  // a's prompt is cached now (but its last block, whose last token starts the answer): only that is left to compute.
  start(engine, clock, input(model, promptA));
  await settle();
  assert.equal(engine.load().pendingPrefillTokens, 16);
});

test("failureRatio fails that share of generations at once with an internal engine error, the same ones for the same seed", async () => {
  const outcomes = async (failureRatio: number, seed: number) => {
    const { engine, model } = setup({ timeScale: 0, answerTokensMin: 4, answerTokensMax: 4, failureRatio, seed });
    const failed: boolean[] = [];
    for (let index = 0; index < 200; index += 1) {
      try {
        await collect(engine, input(model, "Hi"));
        failed.push(false);
      } catch (error) {
        assert.ok(error instanceof EngineError && error.kind === "internal", String(error));
        failed.push(true);
      }
    }
    return failed;
  };
  assert.ok(
    (await outcomes(0, 1)).every((failed) => !failed),
    "no failure by default",
  );
  assert.ok((await outcomes(1, 1)).every((failed) => failed));
  const half = await outcomes(0.3, 7);
  const count = half.filter(Boolean).length;
  assert.ok(count > 35 && count < 85, `${count} of 200 failed at 0.3`);
  assert.deepEqual(await outcomes(0.3, 7), half, "the same seed fails the same generations");
});
