/**
 * The engine against a small node:http server that answers as vLLM, SGLang, trtllm-serve
 * or llama-server would (canned bodies: none of those servers can run here). The
 * integration test in test/integration/openai-engine.test.ts drives a real server.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, test } from "node:test";
import { ChatMessage, FinishReason, ReasoningEffort, SamplingParams } from "../../../../gen/infermesh/common/v1/common.js";
import { ManualClock } from "../../../common/clock.js";
import { repoRoot } from "../../../common/paths.js";
import { EngineError, type GenerationEvent, type GenerationInput } from "../engine.js";
import { OpenAiEngine } from "./openai-engine.js";
import type { OpenAiEngineOptionsInput } from "./options.js";

const fixture = (name: string) => readFileSync(resolve(repoRoot(), "test/fixtures/upstream-metrics", name), "utf8");

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage["headers"];
  readonly body: any;
}
type Handler = (request: IncomingMessage, response: ServerResponse, body: any) => void | Promise<void>;

/** An HTTP server answering from a route table, recording what it was sent. */
class FakeUpstream {
  readonly routes = new Map<string, Handler>();
  readonly seen: Seen[] = [];
  private server: Server | undefined;
  url = "";

  async start(): Promise<void> {
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        const body = text === "" ? undefined : JSON.parse(text);
        const path = (request.url ?? "").split("?")[0];
        this.seen.push({ method: request.method ?? "", url: path ?? "", headers: request.headers, body });
        const handler = this.routes.get(`${request.method} ${path}`);
        if (!handler) {
          response.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ detail: "Not Found" }));
          return;
        }
        void handler(request, response, body);
      });
    });
    await new Promise<void>((done) => this.server!.listen(0, "127.0.0.1", done));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((done) => this.server?.close(done));
  }

  requests(method: string, url: string): Seen[] {
    return this.seen.filter((entry) => entry.method === method && entry.url === url);
  }
}

const json =
  (status: number, body: unknown): Handler =>
  (_request, response) => {
    response.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  };
const text =
  (body: string, contentType = "text/plain; version=0.0.4"): Handler =>
  (_request, response) => {
    response.writeHead(200, { "content-type": contentType }).end(body);
  };
function startSse(response: ServerResponse): (data: unknown) => void {
  response.writeHead(200, { "content-type": "text/event-stream" });
  return (data) => response.write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
}
const sse =
  (events: unknown[]): Handler =>
  (_request, response) => {
    const send = startSse(response);
    for (const event of events) send(event);
    response.end();
  };

const vllmModels = {
  object: "list",
  data: [{ id: "Qwen/Qwen2.5-Coder-1.5B-Instruct", object: "model", owned_by: "vllm", max_model_len: 32768 }],
};
const model = "Qwen/Qwen2.5-Coder-1.5B-Instruct";

function input(overrides: Partial<GenerationInput> = {}): GenerationInput {
  return {
    requestId: "r1",
    model,
    messages: [ChatMessage.create({ role: "user", content: "What is the weather in Oslo?" })],
    prompt: undefined,
    sampling: SamplingParams.create({}),
    tools: [],
    toolChoice: "",
    reasoningEffort: ReasoningEffort.REASONING_EFFORT_UNSPECIFIED,
    ...overrides,
  };
}

async function collect(events: AsyncIterable<GenerationEvent>): Promise<GenerationEvent[]> {
  const out: GenerationEvent[] = [];
  for await (const event of events) out.push(event);
  return out;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  assert.fail("expected a rejection");
}

let upstream: FakeUpstream;
const engines: OpenAiEngine[] = [];

async function startEngine(options: Partial<OpenAiEngineOptionsInput> = {}, clock?: ManualClock): Promise<OpenAiEngine> {
  const engine = await OpenAiEngine.start({ baseUrl: upstream.url, ...options }, { clock: clock ?? new ManualClock() });
  engines.push(engine);
  return engine;
}

before(async () => {
  upstream = new FakeUpstream();
  await upstream.start();
});

after(async () => {
  await Promise.all(engines.map((engine) => engine.close()));
  await upstream.stop();
});

function reset(): void {
  upstream.routes.clear();
  upstream.seen.length = 0;
  upstream.routes.set("GET /v1/models", json(200, vllmModels));
}

test("start lists the upstream's models with vLLM's max_model_len and reads its metrics", async () => {
  reset();
  upstream.routes.set("GET /metrics", text(fixture("vllm.txt")));
  const engine = await startEngine({ contextTokens: 4096, maxSequences: 48 });
  assert.deepEqual(engine.models(), [
    { id: model, engine: "openai", contextTokens: 32768, description: "served by an upstream vllm server" },
  ]);
  assert.equal(engine.kind, "openai");
  assert.equal(engine.maxSequences, 48);
  assert.deepEqual(engine.load(), {
    runningRequests: 1,
    waitingRequests: 0,
    kvUsedTokens: 16,
    kvTotalTokens: 102_563 * 16,
    idleSequences: 0,
    tokensPerSecond: 0,
    prefixCacheQueries: 32,
    prefixCacheHits: 0,
  });
  assert.equal(await engine.evictIdle(1000), 0);
});

test("configured model ids are served even when the upstream lists others; context falls back to the option", async () => {
  reset();
  const engine = await startEngine({ modelIds: "a, b", contextTokens: 4096 });
  assert.deepEqual(
    engine.models().map((entry) => [entry.id, entry.contextTokens]),
    [
      ["a", 4096],
      ["b", 4096],
    ],
  );
});

test("start fails clearly when nobody listens, or when the key is refused", async () => {
  const closed = createServer();
  await new Promise<void>((done) => closed.listen(0, "127.0.0.1", done));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((done) => closed.close(done));
  const down = await rejection(OpenAiEngine.start({ baseUrl: `http://127.0.0.1:${port}` }));
  assert.ok(down instanceof EngineError);
  assert.equal(down.kind, "unavailable");
  assert.match(down.message, /cannot use the upstream engine server at http:\/\/127\.0\.0\.1:\d+.*unreachable \(ECONNREFUSED\)/);

  reset();
  upstream.routes.set("GET /v1/models", json(401, { error: { message: "Unauthorized", type: "invalid_request_error" } }));
  const refused = await rejection(OpenAiEngine.start({ baseUrl: upstream.url, apiKey: "sk-wrong-key", modelIds: ["m"] }));
  assert.ok(refused instanceof EngineError);
  assert.equal(refused.kind, "unauthenticated");
  assert.doesNotMatch(refused.message, /sk-wrong-key/);
});

test("a chat generation sends the mapped OpenAI body and streams started → deltas → finished", async () => {
  reset();
  upstream.routes.set("GET /metrics", text(fixture("vllm.txt")));
  upstream.routes.set(
    "POST /v1/chat/completions",
    sse([
      { choices: [{ index: 0, delta: { role: "assistant", content: "" } }], usage: { prompt_tokens: 58, completion_tokens: 0 } },
      { choices: [{ index: 0, delta: { reasoning_content: "Need weather." } }], usage: { prompt_tokens: 58, completion_tokens: 3 } },
      {
        choices: [
          {
            index: 0,
            delta: { tool_calls: [{ index: 0, id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":' } }] },
          },
        ],
        usage: { prompt_tokens: 58, completion_tokens: 8 },
      },
      {
        choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '"Oslo"}' } }] }, finish_reason: "tool_calls" }],
        usage: { prompt_tokens: 58, completion_tokens: 11 },
      },
      {
        choices: [],
        usage: {
          prompt_tokens: 58,
          completion_tokens: 11,
          prompt_tokens_details: { cached_tokens: 48 },
          completion_tokens_details: { reasoning_tokens: 3 },
        },
      },
      "[DONE]",
    ]),
  );
  const engine = await startEngine({ apiKey: "sk-secret-123" });
  const changes: number[] = [];
  engine.onLoadChange(() => changes.push(engine.load().runningRequests));
  const events = await collect(
    engine.generate(
      input({
        messages: [
          ChatMessage.create({ role: "system", content: "Be brief." }),
          ChatMessage.create({ role: "user", content: "Weather in Oslo?" }),
          ChatMessage.create({
            role: "assistant",
            content: "",
            toolCalls: [{ id: "call_0", name: "get_weather", arguments: '{"city":"Bergen"}' }],
          }),
          ChatMessage.create({ role: "tool", content: "rain", toolCallId: "call_0" }),
        ],
        sampling: SamplingParams.create({
          temperature: 0.2,
          topP: 0.9,
          topK: 40,
          seed: 7,
          stop: ["\n\n"],
          maxTokens: 100,
          presencePenalty: 0.5,
          logprobs: true,
          topLogprobs: 2,
          responseFormat: { format: { $case: "jsonSchema", value: { name: "weather", schemaJson: '{"type":"object"}' } } },
        }),
        tools: [
          {
            name: "get_weather",
            description: "Weather for a city",
            parametersJson: '{"type":"object","properties":{"city":{"type":"string"}}}',
          },
        ],
        toolChoice: "get_weather",
        reasoningEffort: ReasoningEffort.REASONING_EFFORT_HIGH,
      }),
      new AbortController().signal,
    ),
  );

  const [sent] = upstream.requests("POST", "/v1/chat/completions");
  assert.ok(sent);
  assert.equal(sent.headers.authorization, "Bearer sk-secret-123");
  assert.deepEqual(sent.body, {
    model,
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Weather in Oslo?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "call_0", type: "function", function: { name: "get_weather", arguments: '{"city":"Bergen"}' } }],
      },
      { role: "tool", content: "rain", tool_call_id: "call_0" },
    ],
    temperature: 0.2,
    top_p: 0.9,
    seed: 7,
    stop: ["\n\n"],
    presence_penalty: 0.5,
    top_k: 40,
    logprobs: true,
    top_logprobs: 2,
    response_format: { type: "json_schema", json_schema: { name: "weather", schema: { type: "object" } } },
    max_tokens: 100,
    n: 1,
    stream: true,
    stream_options: { include_usage: true, continuous_usage_stats: true },
    tools: [
      {
        type: "function",
        function: {
          name: "get_weather",
          description: "Weather for a city",
          parameters: { type: "object", properties: { city: { type: "string" } } },
        },
      },
    ],
    tool_choice: { type: "function", function: { name: "get_weather" } },
    reasoning_effort: "high",
  });

  assert.deepEqual(events, [
    { kind: "started", promptTokens: 58, cachedTokens: 0, maxTokens: 100 },
    { kind: "delta", text: "", reasoningText: "Need weather.", tokenCount: 3 },
    {
      kind: "delta",
      text: "",
      tokenCount: 5,
      toolCalls: [{ index: 0, call: { id: "call_1", name: "get_weather", arguments: '{"city":' } }],
    },
    { kind: "delta", text: "", tokenCount: 3, toolCalls: [{ index: 0, call: { id: "", name: "", arguments: '"Oslo"}' } }] },
    {
      kind: "finished",
      finishReason: FinishReason.FINISH_REASON_TOOL_CALLS,
      promptTokens: 58,
      completionTokens: 11,
      cachedTokens: 48,
      reasoningTokens: 3,
    },
  ]);
  assert.deepEqual(changes, [1, 1], "load changed when the request opened and when it closed");
});

test("a raw prompt goes to /v1/completions; without known metrics no vLLM-only stream option is sent", async () => {
  reset();
  upstream.routes.set(
    "POST /v1/completions",
    sse([
      {
        object: "text_completion",
        choices: [
          {
            index: 0,
            text: " Paris",
            logprobs: { tokens: [" Paris"], token_logprobs: [-0.1], top_logprobs: [{ " Paris": -0.1 }] },
            finish_reason: null,
          },
        ],
      },
      { object: "text_completion", choices: [{ index: 0, text: ".", finish_reason: "stop" }] },
      { object: "text_completion", choices: [], usage: { prompt_tokens: 6, completion_tokens: 2 } },
      "[DONE]",
    ]),
  );
  const engine = await startEngine();
  const events = await collect(
    engine.generate(
      input({ messages: [], prompt: "The capital of France is", sampling: SamplingParams.create({ logprobs: true, topLogprobs: 1 }) }),
      new AbortController().signal,
    ),
  );
  const [sent] = upstream.requests("POST", "/v1/completions");
  assert.deepEqual(sent!.body, {
    model,
    prompt: "The capital of France is",
    logprobs: 1,
    n: 1,
    stream: true,
    stream_options: { include_usage: true },
  });
  assert.equal(sent!.headers.authorization, undefined);
  assert.deepEqual(
    events.map((event) => (event.kind === "delta" ? event.text : event.kind)),
    ["started", " Paris", ".", "finished"],
  );
  assert.deepEqual(
    events[0],
    { kind: "started", promptTokens: 6, cachedTokens: 0, maxTokens: 32_762 },
    "estimate: 24 characters / 4; no bound asked: the room the 32,768-token context leaves",
  );
  const finished = events.at(-1)!;
  assert.ok(finished.kind === "finished");
  assert.equal(finished.promptTokens, 6);
  assert.equal(finished.completionTokens, 2);
});

test("priorityOrder sends the priority class as the upstream's priority: lower first for vLLM, higher first for SGLang; off sends none", async () => {
  reset();
  const stream = [
    { choices: [{ index: 0, delta: { content: "ok" }, finish_reason: "stop" }] },
    { choices: [], usage: { prompt_tokens: 3, completion_tokens: 1 } },
    "[DONE]",
  ];
  upstream.routes.set("POST /v1/chat/completions", sse(stream));
  const sentPriorities = async (priorityOrder: "off" | "lower-first" | "higher-first") => {
    const engine = await startEngine({ priorityOrder });
    upstream.seen.length = 0;
    for (const priority of ["interactive", "standard", "batch", undefined] as const) {
      await collect(engine.generate(input(priority === undefined ? {} : { priority }), new AbortController().signal));
    }
    return upstream.requests("POST", "/v1/chat/completions").map((request) => request.body.priority);
  };
  assert.deepEqual(await sentPriorities("lower-first"), [0, 1, 2, 1], "interactive first; a request without a class is standard");
  assert.deepEqual(await sentPriorities("higher-first"), [2, 1, 0, 1]);
  assert.deepEqual(await sentPriorities("off"), [undefined, undefined, undefined, undefined]);
});

test("upstream HTTP errors become the matching EngineError before started, with the upstream's message and no key", async () => {
  reset();
  const engine = await startEngine({ apiKey: "sk-secret-123" });
  const cases: [number, string][] = [
    [400, "invalid_argument"],
    [401, "unauthenticated"],
    [403, "permission_denied"],
    [404, "not_found"],
    [408, "deadline_exceeded"],
    [413, "invalid_argument"],
    [422, "invalid_argument"],
    [429, "resource_exhausted"],
    [500, "internal"],
    [502, "unavailable"],
    [503, "unavailable"],
    [504, "unavailable"],
  ];
  for (const [status, kind] of cases) {
    upstream.routes.set(
      "POST /v1/chat/completions",
      json(status, { error: { message: `status ${status} for key sk-secret-123 (Bearer sk-secret-123)`, type: "x", code: status } }),
    );
    const error = await rejection(collect(engine.generate(input(), new AbortController().signal)));
    assert.ok(error instanceof EngineError, `${status} → EngineError`);
    assert.equal(error.kind, kind, `${status} → ${kind}`);
    assert.match(error.message, new RegExp(`upstream answered ${status}: status ${status} for key \\[redacted\\]`));
    assert.doesNotMatch(error.message, /sk-secret-123/);
  }
  upstream.routes.set("POST /v1/chat/completions", json(422, { detail: [{ loc: ["body", "messages"], msg: "Field required" }] }));
  const fastApi = await rejection(collect(engine.generate(input(), new AbortController().signal)));
  assert.match((fastApi as Error).message, /422: Field required/);
  assert.equal(engine.load().runningRequests, 0, "failed requests are no longer counted");
});

test("an error event before any token is an EngineError from its code; after a token, a plain Error", async () => {
  reset();
  const engine = await startEngine();
  upstream.routes.set("POST /v1/chat/completions", sse([{ error: { message: "prompt too long", type: "BadRequestError", code: 400 } }]));
  const early = await rejection(collect(engine.generate(input(), new AbortController().signal)));
  assert.ok(early instanceof EngineError);
  assert.equal(early.kind, "invalid_argument");

  upstream.routes.set(
    "POST /v1/chat/completions",
    sse([{ choices: [{ index: 0, delta: { content: "Hi" } }] }, { object: "error", message: "engine died", code: 500 }]),
  );
  const seen: GenerationEvent[] = [];
  const late = await rejection(
    (async () => {
      for await (const event of engine.generate(input(), new AbortController().signal)) seen.push(event);
    })(),
  );
  assert.deepEqual(
    seen.map((event) => event.kind),
    ["started", "delta"],
  );
  assert.ok(late instanceof Error && !(late instanceof EngineError));
  assert.match(late.message, /engine died/);
});

test("a connection that breaks after started fails with a plain Error", async () => {
  reset();
  const engine = await startEngine();
  upstream.routes.set("POST /v1/chat/completions", (_request, response) => {
    startSse(response)({ choices: [{ index: 0, delta: { content: "par" } }] });
    setTimeout(() => response.destroy(), 20);
  });
  const seen: string[] = [];
  const error = await rejection(
    (async () => {
      for await (const event of engine.generate(input(), new AbortController().signal)) seen.push(event.kind);
    })(),
  );
  assert.deepEqual(seen, ["started", "delta"]);
  assert.ok(error instanceof Error && !(error instanceof EngineError));
  assert.match(error.message, /broke off|before the generation finished/);
});

test("an upstream that sends no headers within requestTimeoutMs is unavailable", async () => {
  reset();
  const engine = await startEngine({ requestTimeoutMs: 200 });
  upstream.routes.set("POST /v1/chat/completions", () => undefined);
  const started = performance.now();
  const error = await rejection(collect(engine.generate(input(), new AbortController().signal)));
  assert.ok(error instanceof EngineError);
  assert.equal(error.kind, "unavailable");
  assert.match(error.message, /did not answer within 200 ms/);
  assert.ok(performance.now() - started < 2_000);
});

test("aborting mid-stream closes the upstream connection at once and finishes CANCELLED", async () => {
  reset();
  const engine = await startEngine();
  let upstreamClosed!: () => void;
  const closed = new Promise<void>((done) => (upstreamClosed = done));
  upstream.routes.set("POST /v1/chat/completions", (_request, response) => {
    const send = startSse(response);
    send({ choices: [{ index: 0, delta: { content: "one" } }] });
    send({ choices: [{ index: 0, delta: { content: " two" } }] });
    response.on("close", () => upstreamClosed());
  });
  const controller = new AbortController();
  const events: GenerationEvent[] = [];
  for await (const event of engine.generate(input(), controller.signal)) {
    events.push(event);
    if (event.kind === "delta" && event.text === " two") controller.abort();
  }
  await Promise.race([closed, sleep(1_000).then(() => assert.fail("the upstream connection stayed open"))]);
  assert.deepEqual(
    events.map((event) => event.kind),
    ["started", "delta", "delta", "finished"],
  );
  assert.deepEqual(events.at(-1), {
    kind: "finished",
    finishReason: FinishReason.FINISH_REASON_CANCELLED,
    promptTokens: 14, // estimate: 3 + 4 per message + 28 characters / 4
    completionTokens: 2,
    cachedTokens: 0,
    reasoningTokens: 0,
  });
});

test("aborting before started rejects with the abort reason", async () => {
  reset();
  const engine = await startEngine();
  upstream.routes.set("POST /v1/chat/completions", () => undefined);
  const controller = new AbortController();
  const reason = new Error("caller went away");
  setTimeout(() => controller.abort(reason), 50);
  assert.equal(await rejection(collect(engine.generate(input(), controller.signal))), reason);
  const unknown = await rejection(collect(engine.generate(input({ model: "other" }), new AbortController().signal)));
  assert.ok(unknown instanceof EngineError && unknown.kind === "not_found");
});

test("tokenize and detokenize use vLLM's endpoints, llama-server's body for llamacpp, unimplemented when absent", async () => {
  reset();
  upstream.routes.set("GET /metrics", text(fixture("vllm.txt")));
  upstream.routes.set("POST /tokenize", json(200, { count: 3, max_model_len: 32768, tokens: [9707, 11, 1879] }));
  upstream.routes.set("POST /detokenize", json(200, { prompt: "Hello, world" }));
  const vllm = await startEngine();
  assert.deepEqual(await vllm.tokenize(model, "Hello, world"), [9707, 11, 1879]);
  assert.deepEqual(upstream.requests("POST", "/tokenize")[0]!.body, { model, prompt: "Hello, world", add_special_tokens: false });
  await vllm.tokenize(model, "", [ChatMessage.create({ role: "user", content: "Hi" })]);
  assert.deepEqual(upstream.requests("POST", "/tokenize")[1]!.body, {
    model,
    messages: [{ role: "user", content: "Hi" }],
    add_generation_prompt: true,
  });
  assert.equal(await vllm.detokenize(model, [9707, 11, 1879]), "Hello, world");
  assert.deepEqual(upstream.requests("POST", "/detokenize")[0]!.body, { model, tokens: [9707, 11, 1879] });

  reset();
  upstream.routes.set("GET /metrics", text(fixture("llamacpp.txt")));
  upstream.routes.set("POST /tokenize", json(200, { tokens: [1, 2] }));
  upstream.routes.set("POST /detokenize", json(200, { content: "ab" }));
  const llamacpp = await startEngine();
  assert.deepEqual(await llamacpp.tokenize(model, "ab"), [1, 2]);
  assert.deepEqual(upstream.requests("POST", "/tokenize")[0]!.body, { content: "ab", add_special: false });
  assert.equal(await llamacpp.detokenize(model, [1, 2]), "ab");

  reset();
  const bare = await startEngine();
  for (const call of [() => bare.tokenize(model, "x"), () => bare.detokenize(model, [1])]) {
    const error = await rejection(call());
    assert.ok(error instanceof EngineError);
    assert.equal(error.kind, "unimplemented");
  }
});

test("embed returns L2-normalised vectors in input order; an upstream without /v1/embeddings is unimplemented", async () => {
  reset();
  upstream.routes.set(
    "POST /v1/embeddings",
    json(200, {
      data: [
        { index: 1, embedding: [0, 2] },
        { index: 0, embedding: [3, 4] },
      ],
      usage: { prompt_tokens: 4 },
    }),
  );
  const engine = await startEngine();
  assert.deepEqual(await engine.embed(model, ["a", "b"], new AbortController().signal), {
    vectors: [
      [0.6, 0.8],
      [0, 1],
    ],
    promptTokens: 4,
  });
  assert.deepEqual(upstream.requests("POST", "/v1/embeddings")[0]!.body, { model, input: ["a", "b"], encoding_format: "float" });
  upstream.routes.delete("POST /v1/embeddings");
  const error = await rejection(engine.embed(model, ["a"], new AbortController().signal));
  assert.ok(error instanceof EngineError && error.kind === "unimplemented");
});

test("load follows the polls: upstream figures, throughput from the token counter, open requests as a floor; close stops polling", async () => {
  reset();
  let metrics =
    "sglang:num_running_reqs 0\nsglang:num_queue_reqs 4\nsglang:max_total_num_tokens 1000\nsglang:num_used_tokens 250\nsglang:generation_tokens_total 1000\n";
  upstream.routes.set("GET /metrics", (_request, response) => text(metrics)(_request, response, undefined));
  const clock = new ManualClock();
  const engine = await startEngine({ pollIntervalMs: 1000 }, clock);
  assert.deepEqual([engine.load().waitingRequests, engine.load().kvUsedTokens, engine.load().kvTotalTokens], [4, 250, 1000]);

  let changed!: () => void;
  const nextChange = new Promise<void>((done) => (changed = done));
  engine.onLoadChange(() => changed());
  metrics = metrics.replace("generation_tokens_total 1000", "generation_tokens_total 1600").replace("num_queue_reqs 4", "num_queue_reqs 1");
  clock.advance(1000);
  await nextChange;
  assert.equal(engine.load().waitingRequests, 1);
  assert.equal(engine.load().tokensPerSecond, 600);

  // A request this worker has open counts even while the upstream's gauge still says 0.
  upstream.routes.set("POST /v1/chat/completions", (_request, response) => {
    startSse(response)({ choices: [{ index: 0, delta: { content: "x" } }] });
  });
  const controller = new AbortController();
  const stream = engine.generate(input({ model: "Qwen/Qwen2.5-Coder-1.5B-Instruct" }), controller.signal)[Symbol.asyncIterator]();
  await stream.next();
  assert.equal(engine.load().runningRequests, 1);
  controller.abort();
  while (!(await stream.next()).done);
  assert.equal(engine.load().runningRequests, 0);

  await engine.close();
  const polls = upstream.requests("GET", "/metrics").length;
  clock.advance(5000);
  await sleep(50);
  assert.equal(upstream.requests("GET", "/metrics").length, polls, "no polls after close");
});

test("trtllm-serve: /metrics answers JSON, so the Prometheus text comes from /prometheus/metrics", async () => {
  reset();
  upstream.routes.set("GET /metrics", text("[]", "application/json"));
  upstream.routes.set("GET /prometheus/metrics", text(fixture("trtllm.txt")));
  const engine = await startEngine();
  const load = engine.load();
  assert.deepEqual([load.runningRequests, load.waitingRequests, load.kvUsedTokens, load.kvTotalTokens], [12, 3, 1530 * 32, 4096 * 32]);
  assert.deepEqual([load.prefixCacheQueries, load.prefixCacheHits], [183_472, 91_520]);
  assert.match(engine.models()[0]!.description, /trtllm/);
});
