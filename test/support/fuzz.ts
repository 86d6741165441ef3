/**
 * The fuzz suite's cases and properties (fast-check), shared by the bounded run in
 * `npm test` (test/integration/fuzz.test.ts) and the long one (`npm run fuzz`). Each
 * property sends generated input to a real mesh and checks what a client would see:
 * over HTTP no 5xx but a 503 or 504 with Retry-After, and every error in OpenAI's
 * shape; over gRPC a precise status, never INTERNAL or UNKNOWN.
 */
import { status } from "@grpc/grpc-js";
import fc from "fast-check";
import { createChannel, createClient, type Client } from "nice-grpc";
import { AdmissionServiceDefinition } from "../../gen/infermesh/admission/v1/admission_service.js";
import { ChatServiceDefinition, type ChatRequest } from "../../gen/infermesh/gateway/v1/chat_service.js";
import { MemoryGuardServiceDefinition } from "../../gen/infermesh/memory/v1/memory_service.js";
import { RouterServiceDefinition } from "../../gen/infermesh/router/v1/router_service.js";
import { WorkerServiceDefinition } from "../../gen/infermesh/worker/v1/worker_service.js";
import type { MeshRole } from "../../services/common/mesh-security/identity.js";
import { meshCredentials, type TestMesh } from "./harness.js";
import { callRaw, type RawMethod, rawMethods } from "./raw-grpc.js";

/** What one kind of case did: how many ran and how many broke the property (by what). */
export interface FuzzTally {
  cases: number;
  failures: Map<string, number>;
  /** Answers by kind (HTTP status or gRPC status name), to show what the cases reached. */
  answers: Map<string, number>;
}

export const newTally = (): FuzzTally => ({ cases: 0, failures: new Map(), answers: new Map() });

const answered = (tally: FuzzTally, answer: string) => tally.answers.set(answer, (tally.answers.get(answer) ?? 0) + 1);

const note = (tally: FuzzTally, problem: string | undefined) => {
  tally.cases += 1;
  if (problem) tally.failures.set(problem, (tally.failures.get(problem) ?? 0) + 1);
  return problem;
};

// ---- HTTP ----------------------------------------------------------------------------

/** Values a JSON field might be sent, from plausible to hostile. */
const jsonValue = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.oneof(fc.integer({ min: -5, max: 5 }), fc.double({ min: -10, max: 10, noNaN: true }), fc.boolean(), fc.constant(null)),
  },
  { weight: 2, arbitrary: fc.constantFrom(0, -1, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 64, -(2 ** 63), 1e308, -1e308, 5e-324, 0.5) },
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.constantFrom("", "auto", "none", "required", "high", "<|start|>", "\u0000", "🙂".repeat(10)) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);

/** Mostly a plausible value, now and then a hostile one: so cases reach the workers, not only the validation. */
const field = <Value>(valid: fc.Arbitrary<Value>, hostile: fc.Arbitrary<unknown> = jsonValue) =>
  fc.oneof({ weight: 16, arbitrary: valid }, { weight: 1, arbitrary: hostile });

/** Absent (left out of the JSON) but now and then. */
const rarely = (value: fc.Arbitrary<unknown>) =>
  fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: value });

/** A long run of one character class: what crashed llama.cpp's pre-tokenizer. */
const longRun = fc
  .tuple(fc.constantFrom("a", " ", "!", "中", "1", "\n"), fc.integer({ min: 3_000, max: 30_000 }))
  .map(([character, length]) => character.repeat(length));

const content = fc.oneof(
  { weight: 40, arbitrary: fc.string({ maxLength: 60 }) },
  { weight: 1, arbitrary: longRun },
  { weight: 1, arbitrary: jsonValue },
);

const message = fc.oneof(
  { weight: 6, arbitrary: fc.record({ role: fc.constantFrom("system", "user", "assistant"), content }) },
  {
    weight: 1,
    arbitrary: fc.record(
      {
        role: fc.oneof(fc.constantFrom("system", "developer", "user", "assistant", "tool"), fc.string({ maxLength: 8 })),
        content,
        tool_call_id: fc.oneof(fc.string({ maxLength: 8 }), jsonValue),
        tool_calls: fc.array(
          fc.record({
            id: fc.string({ maxLength: 6 }),
            type: fc.constant("function"),
            function: fc.record({ name: fc.string({ maxLength: 8 }), arguments: fc.string({ maxLength: 20 }) }),
          }),
          { maxLength: 2 },
        ),
        name: fc.string({ maxLength: 8 }),
      },
      { requiredKeys: ["role"] },
    ),
  },
);

/** A JSON Schema-ish value: valid, invalid, or deep. */
const schema = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ type: "object", properties: { city: { type: "string" } }, required: ["city"] }) },
  fc.constant({ type: "bogus" }),
  fc.jsonValue({ maxDepth: 4 }),
  fc
    .integer({ min: 1, max: 40 })
    .map((depth) => JSON.parse(`${'{"type":"object","properties":{"a":'.repeat(depth)}{"type":"string"}${"}}".repeat(depth)}`)),
);

const tool = fc.record(
  {
    type: field(fc.constant("function"), fc.string({ maxLength: 6 })),
    function: fc.record(
      {
        name: field(fc.constantFrom("get_weather", "get_time"), fc.string({ maxLength: 70 })),
        description: fc.string({ maxLength: 20 }),
        parameters: schema,
      },
      { requiredKeys: ["name"] },
    ),
  },
  { requiredKeys: ["type", "function"] },
);

/** Sampling fields both text endpoints take, each present or not, any value. */
const samplingFields = {
  temperature: field(fc.double({ min: 0, max: 2, noNaN: true })),
  top_p: field(fc.double({ min: 0.01, max: 1, noNaN: true })),
  top_k: field(fc.integer({ min: 0, max: 100 })),
  min_p: field(fc.double({ min: 0, max: 1, noNaN: true })),
  repetition_penalty: field(fc.double({ min: 0.5, max: 2, noNaN: true })),
  presence_penalty: field(fc.double({ min: -2, max: 2, noNaN: true })),
  frequency_penalty: field(fc.double({ min: -2, max: 2, noNaN: true })),
  seed: field(fc.integer()),
  n: field(fc.integer({ min: 1, max: 4 }), fc.integer({ min: -1, max: 20 })),
  stop: field(
    fc.oneof(fc.string({ minLength: 1, maxLength: 5 }), fc.array(fc.string({ minLength: 1, maxLength: 5 }), { maxLength: 4 })),
    fc.array(fc.string({ maxLength: 5 }), { maxLength: 8 }),
  ),
  stream: field(fc.boolean()),
  stream_options: field(fc.record({ include_usage: fc.boolean() })),
  user: field(fc.string({ maxLength: 10 })),
  logit_bias: field(fc.constant({})),
};

/** max_tokens kept small mostly, so a case costs milliseconds, not a long generation. */
const maxTokens = field(fc.integer({ min: 1, max: 8 }));

/** The models a case may ask for: the mesh's and some that do not exist. */
export const fuzzModels = ["sim-gpt-oss-20b", "infermesh-test"];
const modelName = field(fc.constantFrom(...fuzzModels), fc.oneof(jsonValue, fc.string({ maxLength: 10 })));

const chatBody = fc.record(
  {
    model: modelName,
    messages: field(fc.array(message, { minLength: 1, maxLength: 4 }), fc.oneof(jsonValue, fc.constant([]))),
    max_tokens: maxTokens,
    ...samplingFields,
    tools: field(fc.array(tool, { maxLength: 3 })),
    tool_choice: field(
      fc.constantFrom("auto", "none", "required"),
      fc.oneof(jsonValue, fc.record({ type: fc.constant("function"), function: fc.record({ name: fc.string({ maxLength: 12 }) }) })),
    ),
    response_format: field(
      fc.oneof(
        fc.record({ type: fc.constantFrom("text", "json_object") }),
        fc.record({
          type: fc.constant("json_schema"),
          json_schema: fc.record({ name: fc.string({ minLength: 1, maxLength: 6 }), schema }),
        }),
      ),
    ),
    logprobs: field(fc.boolean()),
    top_logprobs: rarely(fc.integer({ min: 0, max: 5 })),
    reasoning_effort: field(fc.constantFrom("low", "medium", "high"), fc.oneof(jsonValue, fc.constant("extreme"))),
  },
  { requiredKeys: ["model", "messages", "max_tokens"] },
);

const completionBody = fc.record(
  {
    model: modelName,
    prompt: field(fc.oneof(content, fc.array(content, { minLength: 1, maxLength: 3 }))),
    max_tokens: maxTokens,
    echo: field(fc.boolean()),
    logprobs: field(fc.integer({ min: 0, max: 5 })),
    best_of: rarely(jsonValue),
    suffix: rarely(jsonValue),
    ...samplingFields,
  },
  { requiredKeys: ["model", "prompt", "max_tokens"] },
);

const embeddingBody = fc.record(
  {
    model: modelName,
    input: fc.oneof(
      content,
      fc.array(content, { maxLength: 5 }),
      fc
        .oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 2_049, max: 2_100 }))
        .map((count) => Array.from({ length: count }, (_, index) => `i${index}`)),
      jsonValue,
    ),
    encoding_format: field(fc.constantFrom("float", "base64")),
    dimensions: rarely(jsonValue),
  },
  { requiredKeys: ["model", "input"] },
);

const textPart = fc.record({ type: field(fc.constantFrom("input_text", "output_text"), fc.string({ maxLength: 12 })), text: content });

const responsesItem = fc.oneof(
  { weight: 6, arbitrary: fc.record({ role: field(fc.constantFrom("user", "system", "developer", "assistant")), content }) },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant("message"),
      role: field(fc.constantFrom("user", "assistant")),
      content: field(fc.array(textPart, { maxLength: 3 })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      type: fc.constant("function_call"),
      call_id: field(fc.string({ maxLength: 8 })),
      name: field(fc.constantFrom("get_weather"), fc.string({ maxLength: 70 })),
      arguments: field(fc.string({ maxLength: 20 })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ type: fc.constant("function_call_output"), call_id: field(fc.string({ maxLength: 8 })), output: content }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.constant("reasoning"),
      summary: field(fc.array(textPart, { maxLength: 2 })),
      content: field(fc.array(textPart)),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ type: fc.constantFrom("item_reference", "web_search_call", "input_image"), id: field(fc.string()) }),
  },
  { weight: 1, arbitrary: jsonValue },
);

const responsesBody = fc.record(
  {
    model: modelName,
    input: field(fc.oneof(content, fc.array(responsesItem, { minLength: 1, maxLength: 4 }))),
    instructions: field(content),
    max_output_tokens: maxTokens,
    temperature: samplingFields.temperature,
    top_p: samplingFields.top_p,
    tools: field(
      fc.array(
        fc.oneof(
          {
            weight: 4,
            arbitrary: fc.record({ type: fc.constant("function"), name: field(fc.constantFrom("get_weather")), parameters: schema }),
          },
          { weight: 1, arbitrary: fc.record({ type: fc.constantFrom("web_search", "file_search", "code_interpreter", "mcp") }) },
        ),
        { maxLength: 3 },
      ),
    ),
    tool_choice: field(
      fc.constantFrom("auto", "none", "required"),
      fc.oneof(jsonValue, fc.record({ type: fc.constant("function"), name: fc.string({ maxLength: 12 }) })),
    ),
    text: field(
      fc.record({
        format: fc.oneof(
          fc.record({ type: fc.constantFrom("text", "json_object") }),
          fc.record({ type: fc.constant("json_schema"), name: fc.string({ minLength: 1, maxLength: 6 }), schema }),
        ),
      }),
    ),
    reasoning: field(fc.record({ effort: field(fc.constantFrom("minimal", "low", "medium", "high")) })),
    stream: field(fc.boolean()),
    store: field(fc.boolean()),
    previous_response_id: rarely(fc.string({ maxLength: 60 })),
    parallel_tool_calls: field(fc.boolean()),
    metadata: field(fc.dictionary(fc.string({ maxLength: 70 }), fc.string({ maxLength: 600 }), { maxKeys: 20 })),
    include: field(fc.array(fc.constantFrom("message.output_text.logprobs", "reasoning.encrypted_content"), { maxLength: 2 })),
    top_logprobs: rarely(fc.integer({ min: 0, max: 25 })),
    background: rarely(fc.boolean()),
    truncation: rarely(fc.constantFrom("auto", "disabled")),
    user: field(fc.string({ maxLength: 10 })),
    prompt_cache_key: rarely(fc.string({ maxLength: 20 })),
  },
  { requiredKeys: ["model", "input", "max_output_tokens"] },
);

/** One HTTP request: a method, a path (sometimes mangled), headers and a body (sometimes not JSON). */
export const httpCase = fc
  .oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        method: fc.constant("POST"),
        path: fc.constant("/v1/chat/completions"),
        body: chatBody.map((body) => JSON.stringify(body)),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        method: fc.constant("POST"),
        path: fc.constant("/v1/completions"),
        body: completionBody.map((body) => JSON.stringify(body)),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        method: fc.constant("POST"),
        path: fc.constant("/v1/responses"),
        body: responsesBody.map((body) => JSON.stringify(body)),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        method: fc.constant("POST"),
        path: fc.constant("/v1/embeddings"),
        body: embeddingBody.map((body) => JSON.stringify(body)),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        method: fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"),
        path: fc.oneof(
          fc.constantFrom(
            "/v1/models",
            "/v1/models/sim-gpt-oss-20b",
            "/v1/models/%ff",
            "/v1/models/%",
            "/v1//models",
            "/v1/chat/completions/",
            "/%2e%2e/admin",
            "/admin/workers",
            "/debug/bundle",
            "/v1/chat/completions?x=%zz",
            "/v1/responses/resp_0",
            "/v1/responses/resp_0/input_items?limit=500&order=sideways",
            "/v1/responses/%ff/input_items",
          ),
          fc.webPath().map((path) => `/v1${path}`),
          fc.string({ maxLength: 20 }).map((text) => `/v1/models/${encodeURIComponent(text)}`),
        ),
        body: fc.oneof(
          fc.constant(""),
          fc.string({ maxLength: 50 }),
          fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value)),
          fc.integer({ min: 60, max: 20_000 }).map((depth) => `${"[".repeat(depth)}${"]".repeat(depth)}`),
        ),
      }),
    },
  )
  .chain((request) =>
    fc.record({
      method: fc.constant(request.method),
      path: fc.constant(request.path),
      body: fc.constant(request.body),
      headers: fc.record(
        {
          "content-type": fc.oneof(
            { weight: 8, arbitrary: fc.constant("application/json") },
            { weight: 1, arbitrary: fc.constantFrom("text/plain", "application/json; charset=latin1", "multipart/form-data", "") },
          ),
          authorization: fc.oneof(
            fc.constant("Bearer sk-wrong"),
            fc.string({ maxLength: 20 }).map((text) => `Bearer ${text.replace(/[^\x20-\x7e]/g, "")}`),
          ),
          "x-request-id": fc.string({ maxLength: 200 }).map((text) => text.replace(/[^\x20-\x7e]/g, "")),
          "x-infermesh-priority": field(
            fc.constantFrom("interactive", "standard", "batch"),
            fc.string({ maxLength: 10 }).map((text) => text.replace(/[^\x20-\x7e]/g, "")),
          ),
          "x-infermesh-profile": field(
            fc.constantFrom("latency_first", "quality_first", "balanced"),
            fc.string({ maxLength: 10 }).map((text) => text.replace(/[^\x20-\x7e]/g, "")),
          ),
        },
        { requiredKeys: ["content-type"] },
      ),
    }),
  );

export type HttpCase = typeof httpCase extends fc.Arbitrary<infer Case> ? Case : never;

/** Sends one case; returns what broke the property, or undefined. */
export async function checkHttpCase(baseUrl: string, request: HttpCase, tally: FuzzTally): Promise<string | undefined> {
  let response: Response;
  try {
    response = await fetch(`${baseUrl}${request.path}`, {
      method: request.method,
      headers: Object.fromEntries(
        Object.entries(request.headers).filter((entry): entry is [string, string] => typeof entry[1] === "string" && entry[1] !== ""),
      ),
      body: request.method === "GET" || request.method === "OPTIONS" ? undefined : request.body,
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    return note(tally, `no answer (${(error as Error).name})`);
  }
  answered(tally, String(response.status));
  const text = await response.text().catch(() => undefined);
  if (text === undefined) return note(tally, "the body broke off");
  if (response.status >= 500) {
    if (response.status !== 503 && response.status !== 504) return note(tally, `HTTP ${response.status}`);
    if (!response.headers.get("retry-after")) return note(tally, `HTTP ${response.status} without Retry-After`);
  }
  if (response.status >= 400) return note(tally, openAiErrorProblem(text, response.status));
  if ((response.headers.get("content-type") ?? "").startsWith("text/event-stream")) return note(tally, sseProblem(text));
  return note(tally, undefined);
}

function openAiErrorProblem(text: string, httpStatus: number): string | undefined {
  let body: { error?: { message?: unknown; type?: unknown; param?: unknown; code?: unknown } };
  try {
    body = JSON.parse(text);
  } catch {
    return `HTTP ${httpStatus} with a body that is not JSON`;
  }
  const error = body.error;
  if (!error || typeof error.message !== "string" || typeof error.type !== "string" || !("param" in error) || !("code" in error))
    return `HTTP ${httpStatus} not in OpenAI's error shape`;
  if (/\n\s+at |node_modules|\/work\//.test(error.message)) return `HTTP ${httpStatus} leaking internals`;
  return undefined;
}

/**
 * A stream's events are JSON (an error one in OpenAI's shape) and it ends with [DONE] or
 * an error; a Responses stream (named events) ends with its response's end.
 */
function sseProblem(text: string): string | undefined {
  if (text.startsWith("event: ")) return responsesStreamProblem(text);
  const data = text
    .split("\n")
    .filter((line) => line.startsWith("data: "))
    .map((line) => line.slice(6));
  if (data.length === 0) return "an empty event stream";
  for (const event of data) {
    if (event === "[DONE]") continue;
    let parsed: { error?: unknown };
    try {
      parsed = JSON.parse(event);
    } catch {
      return "an SSE event that is not JSON";
    }
    if (parsed.error !== undefined) return openAiErrorProblem(event, 200);
  }
  const last = data.at(-1)!;
  return last === "[DONE]" || last.includes('"error"') ? undefined : "a stream that did not end";
}

/** A Responses stream: events numbered from 0, each JSON, the last the response's end (a failure with its error). */
function responsesStreamProblem(text: string): string | undefined {
  const events = text
    .split("\n")
    .filter((line) => line.startsWith("data: "))
    .map((line) => line.slice(6));
  let last: { type?: string; sequence_number?: number; response?: { error?: { message?: unknown } } } = {};
  for (const [index, event] of events.entries()) {
    try {
      last = JSON.parse(event);
    } catch {
      return "a Responses event that is not JSON";
    }
    if (last.sequence_number !== index) return "Responses events out of sequence";
  }
  if (last.type === "response.failed")
    return typeof last.response?.error?.message === "string" ? undefined : "response.failed without its error";
  return last.type === "response.completed" || last.type === "response.incomplete" ? undefined : "a Responses stream that did not end";
}

// ---- public gRPC -------------------------------------------------------------------

/** float32 values (what a gRPC client can put on the wire), NaN and infinities included. */
const float = fc.oneof(
  fc.float(),
  fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -1, 0, 1, 3, Math.fround(1e30)),
);
const uint32 = fc.oneof(fc.integer({ min: 0, max: 20 }), fc.constantFrom(0, 1, 2 ** 31, 2 ** 32 - 1));

/** An optional sampling field: absent half the time, else mostly in range. */
const sometimes = <Value>(valid: fc.Arbitrary<Value>, hostile: fc.Arbitrary<unknown>) =>
  fc.option(field(valid, hostile), { nil: undefined, freq: 2 });

export const grpcChatCase: fc.Arbitrary<ChatRequest> = fc.record({
  model: field(fc.constantFrom(...fuzzModels), fc.string({ maxLength: 10 })),
  messages: fc.array(
    fc.record({
      role: field(fc.constantFrom("system", "user", "assistant"), fc.oneof(fc.constant("tool"), fc.string({ maxLength: 6 }))),
      content: fc.oneof({ weight: 12, arbitrary: fc.string({ maxLength: 40 }) }, { weight: 1, arbitrary: longRun }),
      name: fc.option(fc.string({ maxLength: 6 }), { nil: undefined }),
      toolCalls: field(
        fc.constant([]),
        fc.array(
          fc.record({ id: fc.string({ maxLength: 6 }), name: fc.string({ maxLength: 8 }), arguments: fc.string({ maxLength: 10 }) }),
          { maxLength: 2 },
        ),
      ),
      toolCallId: fc.string({ maxLength: 6 }),
      reasoningContent: field(fc.constant(""), fc.string({ maxLength: 10 })),
    }),
    { minLength: 1, maxLength: 4 },
  ),
  sampling: fc.record({
    temperature: sometimes(fc.float({ min: 0, max: 2, noNaN: true }), float),
    topP: sometimes(fc.float({ min: Math.fround(0.01), max: 1, noNaN: true }), float),
    topK: sometimes(fc.integer({ min: 0, max: 100 }), uint32),
    minP: sometimes(fc.float({ min: 0, max: 1, noNaN: true }), float),
    seed: fc.option(uint32, { nil: undefined }),
    stop: field(
      fc.array(fc.string({ minLength: 1, maxLength: 4 }), { maxLength: 4 }),
      fc.array(fc.string({ maxLength: 4 }), { maxLength: 8 }),
    ),
    maxTokens: field(fc.integer({ min: 1, max: 8 }), fc.constantFrom(0, undefined)),
    presencePenalty: sometimes(fc.float({ min: -2, max: 2, noNaN: true }), float),
    frequencyPenalty: sometimes(fc.float({ min: -2, max: 2, noNaN: true }), float),
    repetitionPenalty: sometimes(fc.float({ min: Math.fround(0.5), max: 2, noNaN: true }), float),
    n: sometimes(fc.constant(1), uint32),
    logprobs: fc.boolean(),
    topLogprobs: field(fc.integer({ min: 0, max: 5 }), uint32),
    responseFormat: fc.constant(undefined),
  }),
  user: fc.string({ maxLength: 8 }),
  tools: field(
    fc.constant([]),
    fc.array(
      fc.record({
        name: field(fc.constantFrom("get_weather", "get_time"), fc.string({ maxLength: 10 })),
        description: fc.string({ maxLength: 10 }),
        parametersJson: fc.oneof(
          fc.constant(""),
          schema.map((value) => JSON.stringify(value)),
          fc.string({ maxLength: 20 }),
        ),
      }),
      { maxLength: 2 },
    ),
  ),
  toolChoice: field(fc.constantFrom("", "auto", "none"), fc.oneof(fc.constant("required"), fc.string({ maxLength: 8 }))),
  reasoningEffort: field(fc.integer({ min: 0, max: 3 }), fc.integer({ min: -1, max: 100 })),
  profile: field(fc.constantFrom("", "latency_first", "quality_first", "balanced"), fc.string({ maxLength: 10 })),
}) as fc.Arbitrary<ChatRequest>;

/** gRPC statuses a caller may get for bad input or a busy mesh; INTERNAL and UNKNOWN are defects. */
const preciseStatuses = new Set([
  status.OK,
  status.INVALID_ARGUMENT,
  status.NOT_FOUND,
  status.FAILED_PRECONDITION,
  status.RESOURCE_EXHAUSTED,
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.UNAUTHENTICATED,
  status.PERMISSION_DENIED,
  status.OUT_OF_RANGE,
  status.CANCELLED,
]);

export async function checkGrpcChat(
  chat: Client<typeof ChatServiceDefinition>,
  request: ChatRequest,
  tally: FuzzTally,
): Promise<string | undefined> {
  try {
    await chat.chat(request, { signal: AbortSignal.timeout(30_000) });
    answered(tally, "OK");
    return note(tally, undefined);
  } catch (error) {
    const code = (error as { code?: number }).code;
    answered(tally, code === undefined ? "no status" : status[code]!);
    if (code === undefined || !preciseStatuses.has(code))
      return note(tally, `gRPC ${code === undefined ? (error as Error).message : status[code]}`);
    return note(tally, undefined);
  }
}

export function publicChatClient(mesh: TestMesh): Client<typeof ChatServiceDefinition> {
  return createClient(ChatServiceDefinition, createChannel(`127.0.0.1:${mesh.ports.gatewayGrpc}`));
}

// ---- internal gRPC -----------------------------------------------------------------

/** Internal methods the fuzzer calls, with the identity allowed to. Admin RPCs (drain, split, load, unload) are left out: they act for real. */
export function internalTargets(mesh: TestMesh) {
  const target = (port: number, peer: MeshRole, as: MeshRole, method: RawMethod) => ({
    port,
    credentials: meshCredentials(mesh.pkiDir, peer, as),
    method,
  });
  const admission = rawMethods(AdmissionServiceDefinition);
  const router = rawMethods(RouterServiceDefinition);
  const memoryGuard = rawMethods(MemoryGuardServiceDefinition);
  const worker = rawMethods(WorkerServiceDefinition);
  return [
    target(mesh.ports.admission, "admission", "gateway", admission.acquire!),
    target(mesh.ports.admission, "admission", "gateway", admission.getStats!),
    target(mesh.ports.router, "router", "gateway", router.pick!),
    target(mesh.ports.router, "router", "gateway", router.listWorkers!),
    target(mesh.ports.router, "router", "worker", router.connect!),
    target(mesh.ports.memoryGuard, "memory-guard", "worker", memoryGuard.report!),
    target(mesh.ports.memoryGuard, "memory-guard", "router", memoryGuard.watch!),
    target(mesh.ports.workerBase + 1, "worker", "gateway", worker.generate!),
    target(mesh.ports.workerBase + 1, "worker", "gateway", worker.tokenize!),
    target(mesh.ports.workerBase, "worker", "gateway", worker.tokenize!),
    target(mesh.ports.workerBase, "worker", "gateway", worker.detokenize!),
    target(mesh.ports.workerBase, "worker", "gateway", worker.embed!),
    target(mesh.ports.workerBase, "worker", "gateway", worker.getInfo!),
  ];
}

/** Raw protobuf bytes: random, or plausible fields with hostile values (64-bit varints, bad lengths). */
export const protobufBytes = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc
    .array(
      fc.oneof(
        // A varint field up to 2^64.
        fc
          .tuple(fc.integer({ min: 1, max: 20 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }))
          .map(([field, value]) => [...varint(BigInt(field << 3)), ...varint(value)]),
        // A length-delimited field holding text or nested garbage.
        fc
          .tuple(fc.integer({ min: 1, max: 20 }), fc.uint8Array({ maxLength: 24 }))
          .map(([field, bytes]) => [...varint(BigInt((field << 3) | 2)), ...varint(BigInt(bytes.length)), ...bytes]),
      ),
      { maxLength: 8 },
    )
    .map((fields) => Uint8Array.from(fields.flat())),
);

function varint(value: bigint): number[] {
  const bytes: number[] = [];
  let rest = value;
  do {
    let byte = Number(rest & 0x7fn);
    rest >>= 7n;
    if (rest > 0n) byte |= 0x80;
    bytes.push(byte);
  } while (rest > 0n);
  return bytes;
}

type Target = ReturnType<typeof internalTargets>[number];

/** Calls `target` with `bytes` as its (first) message; a stream is read for its first answer, or left after a quiet moment. */
export async function checkInternalCall(target: Target, bytes: Uint8Array, tally: FuzzTally): Promise<string | undefined> {
  const { code } = await callRaw(target.port, target.credentials, target.method, bytes, { quietMs: 500 });
  answered(tally, status[code] ?? String(code));
  return note(tally, preciseStatuses.has(code) ? undefined : `${target.method.path}: ${status[code] ?? code}`);
}

/** Prints one line per kind of case: cases run and failures by kind. */
export function report(tallies: Record<string, FuzzTally>): string {
  return Object.entries(tallies)
    .map(([kind, tally]) => {
      const failures = [...tally.failures.values()].reduce((a, b) => a + b, 0);
      const which = tally.failures.size > 0 ? ` (${[...tally.failures].map(([problem, count]) => `${problem} x${count}`).join("; ")})` : "";
      const answers = [...tally.answers]
        .sort((a, b) => b[1] - a[1])
        .map(([answer, count]) => `${answer} ${count}`)
        .join(", ");
      return `${kind}: ${tally.cases} cases, ${failures} failures${which}; answers: ${answers}`;
    })
    .join("\n");
}

/** A mesh to fuzz: worker-0 runs llama.cpp on the test model, worker-1 the zero-cost simulator. */
export const fuzzMeshOptions = {
  workers: 2,
  workerArgsOf: (index: number) => (index === 1 ? ["--engine", "sim", "--sim-time-scale", "0"] : []),
};

/**
 * Runs every property for about `secondsPerKind` each (fast-check stops a property at
 * its time limit without failing it) from `seed`; returns the tallies and, for a
 * property that broke, fast-check's report with the shrunk counterexample.
 */
export async function runFuzzSuite(
  mesh: TestMesh,
  options: { secondsPerKind: number; seed: number },
): Promise<{ tallies: Record<string, FuzzTally>; failures: string[] }> {
  const tallies = { http: newTally(), "public gRPC": newTally(), "internal gRPC": newTally() };
  const failures: string[] = [];
  const settings = {
    seed: options.seed,
    numRuns: 1_000_000,
    interruptAfterTimeLimit: options.secondsPerKind * 1_000,
    markInterruptAsFailure: false,
  };
  const chat = publicChatClient(mesh);
  const targets = internalTargets(mesh);
  const record = <Values extends unknown[]>(result: fc.RunDetails<Values>) => {
    if (result.failed) failures.push(fc.defaultReportMessage(result) ?? "a property failed");
  };
  record(
    await fc.check(
      fc.asyncProperty(httpCase, async (request) => (await checkHttpCase(mesh.baseUrl, request, tallies.http)) === undefined),
      settings,
    ),
  );
  record(
    await fc.check(
      fc.asyncProperty(grpcChatCase, async (request) => (await checkGrpcChat(chat, request, tallies["public gRPC"])) === undefined),
      settings,
    ),
  );
  record(
    await fc.check(
      fc.asyncProperty(
        fc.constantFrom(...targets),
        protobufBytes,
        async (target, bytes) => (await checkInternalCall(target, bytes, tallies["internal gRPC"])) === undefined,
      ),
      settings,
    ),
  );
  return { tallies, failures };
}
