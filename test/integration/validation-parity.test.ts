/**
 * One validation for both public APIs: the same bad input, sent as OpenAI JSON over
 * HTTP and as a ChatRequest over the public gRPC API, is refused with the same message
 * and parameter name (400 / INVALID_ARGUMENT), before any work starts.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createChannel, createClient, Status, type Client } from "nice-grpc";
import type { ReasoningEffort } from "../../gen/infermesh/common/v1/common.js";
import { ChatServiceDefinition, type ChatRequest } from "../../gen/infermesh/gateway/v1/chat_service.js";
import { metricSum, startTestMesh, type TestMesh } from "../support/harness.js";

const model = "sim-gpt-oss-20b";
let mesh: TestMesh;
let chat: Client<typeof ChatServiceDefinition>;

before(async () => {
  mesh = await startTestMesh({ workerArgs: ["--engine", "sim", "--sim-time-scale", "0"] });
  chat = createClient(ChatServiceDefinition, createChannel(`127.0.0.1:${mesh.ports.gatewayGrpc}`));
});

after(async () => {
  await mesh?.stop();
});

const user = { role: "user", content: "hi" };
const weather = (parameters: unknown) => ({ type: "function", function: { name: "get_weather", parameters } });

/** An HTTP body and the ChatRequest that says the same, with the parameter both must name. */
interface Case {
  readonly what: string;
  readonly http: Record<string, unknown>;
  readonly grpc: Partial<ChatRequest>;
  readonly param: string;
}

const message = (role: string, content = "x", extra: Record<string, unknown> = {}) => ({
  role,
  content,
  toolCalls: [],
  toolCallId: "",
  reasoningContent: "",
  ...extra,
});
const tool = (name: string, parametersJson = "") => ({ name, description: "", parametersJson });

const cases: Case[] = [
  { what: "temperature -1", http: { temperature: -1 }, grpc: { sampling: { temperature: -1 } as never }, param: "temperature" },
  { what: "temperature 3", http: { temperature: 3 }, grpc: { sampling: { temperature: 3 } as never }, param: "temperature" },
  { what: "top_p 0", http: { top_p: 0 }, grpc: { sampling: { topP: 0 } as never }, param: "top_p" },
  { what: "min_p 5", http: { min_p: 5 }, grpc: { sampling: { minP: 5 } as never }, param: "min_p" },
  {
    what: "presence_penalty 1e30",
    http: { presence_penalty: 1e30 },
    grpc: { sampling: { presencePenalty: 1e30 } as never },
    param: "presence_penalty",
  },
  {
    what: "100 stop strings",
    http: { stop: Array.from({ length: 100 }, (_, index) => `s${index}`) },
    grpc: { sampling: { stop: Array.from({ length: 100 }, (_, index) => `s${index}`) } as never },
    param: "stop",
  },
  { what: "n 0", http: { n: 0 }, grpc: { sampling: { n: 0 } as never }, param: "n" },
  { what: "max_tokens 0", http: { max_tokens: 0 }, grpc: { sampling: { maxTokens: 0 } as never }, param: "max_tokens" },
  {
    what: "top_logprobs without logprobs",
    http: { top_logprobs: 3 },
    grpc: { sampling: { topLogprobs: 3 } as never },
    param: "top_logprobs",
  },
  { what: "no messages", http: { messages: [] }, grpc: { messages: [] }, param: "messages" },
  {
    what: "2,049 messages",
    http: { messages: Array.from({ length: 2_049 }, () => user) },
    grpc: { messages: Array.from({ length: 2_049 }, () => message("user")) },
    param: "messages",
  },
  {
    what: "a tool message without tool_call_id",
    http: { messages: [user, { role: "tool", content: "sunny", tool_call_id: "" }] },
    grpc: { messages: [message("user"), message("tool", "sunny")] },
    param: "messages[1].tool_call_id",
  },
  {
    what: "a tool name with a space",
    http: { tools: [{ type: "function", function: { name: "get weather" } }] },
    grpc: { tools: [tool("get weather")] },
    param: "tools[0].function.name",
  },
  {
    what: "tool_choice naming no tool",
    http: { tools: [weather({ type: "object" })], tool_choice: { type: "function", function: { name: "nope" } } },
    grpc: { tools: [tool("get_weather", '{"type":"object"}')], toolChoice: "nope" },
    param: "tool_choice",
  },
  { what: "tool_choice required without tools", http: { tool_choice: "required" }, grpc: { toolChoice: "required" }, param: "tool_choice" },
  {
    what: "tool parameters of type bogus",
    http: { tools: [weather({ type: "bogus" })] },
    grpc: { tools: [tool("get_weather", '{"type":"bogus"}')] },
    param: "tools[0].function.parameters",
  },
  {
    what: "tool parameters nested 35 levels",
    http: { tools: [weather(JSON.parse(`${'{"type":"object","properties":{"a":'.repeat(17)}{"type":"string"}${"}}".repeat(17)}`))] },
    grpc: { tools: [tool("get_weather", `${'{"type":"object","properties":{"a":'.repeat(17)}{"type":"string"}${"}}".repeat(17)}`)] },
    param: "tools[0].function.parameters",
  },
];

async function httpError(body: Record<string, unknown>): Promise<{ status: number; message: string; param: string | null }> {
  const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [user], max_tokens: 4, ...body }),
  });
  const answer = (await response.json()) as { error: { message: string; param: string | null } };
  return { status: response.status, message: answer.error?.message, param: answer.error?.param };
}

async function grpcError(request: Partial<ChatRequest>): Promise<{ code: Status; details: string }> {
  try {
    await chat.chat({
      model,
      messages: [message("user", "hi")],
      ...request,
      sampling: { maxTokens: 4, stop: [], logprobs: false, topLogprobs: 0, ...(request.sampling ?? {}) },
    });
  } catch (error) {
    const { code, details } = error as { code: Status; details: string };
    return { code, details };
  }
  return { code: Status.OK, details: "" };
}

test("each bad input gets the same 400 over HTTP as INVALID_ARGUMENT over gRPC: one message, one parameter name", async () => {
  for (const { what, http, grpc, param } of cases) {
    const overHttp = await httpError(http);
    const overGrpc = await grpcError(grpc);
    assert.equal(overHttp.status, 400, `${what}: HTTP ${overHttp.status} ${overHttp.message}`);
    assert.equal(overHttp.param, param, `${what}: HTTP param`);
    assert.equal(overGrpc.code, Status.INVALID_ARGUMENT, `${what}: gRPC ${Status[overGrpc.code]} ${overGrpc.details}`);
    assert.equal(overGrpc.details, overHttp.message, `${what}: the same message`);
    assert.ok(overHttp.message.startsWith(`Invalid value for '${param}'`), `${what}: ${overHttp.message}`);
  }
  // Nothing reached a worker.
  const generations = await metricSum(`http://127.0.0.1:${mesh.ports.workerMetricsBase}/metrics`, "infermesh_worker_generations_total");
  assert.equal(generations, 0);
});

test("values only gRPC can carry (NaN, Infinity, an unknown reasoning effort) get the shared refusal too", async () => {
  for (const temperature of [Number.NaN, Number.POSITIVE_INFINITY]) {
    const refused = await grpcError({ sampling: { temperature } as never });
    assert.equal(refused.code, Status.INVALID_ARGUMENT);
    assert.equal(refused.details, "Invalid value for 'temperature': must be at least 0 and at most 2");
  }
  const effort = await grpcError({ reasoningEffort: 99 as ReasoningEffort });
  assert.equal(effort.details, "Invalid value for 'reasoning_effort': must be one of low, medium or high");
  // And top_k past 32 bits, which only JSON can carry, is a 400, not a 500.
  const topK = await httpError({ top_k: 2 ** 32 });
  assert.equal(topK.status, 400);
  assert.equal(topK.param, "top_k");
});

test("every HTTP error has OpenAI's shape: an undecodable URL is a 404, a body nested 10,000 deep a 400", async () => {
  for (const path of ["/v1/models/%ff", "/v1/no-such-endpoint"]) {
    const response = await fetch(`${mesh.baseUrl}${path}`);
    assert.equal(response.status, 404, path);
    const body = (await response.json()) as { error: Record<string, unknown> };
    assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
    assert.equal(body.error.code, "unknown_url");
  }
  const deep = `{"model":"${model}","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":${"[".repeat(10_000)}${"]".repeat(10_000)}}}]}`;
  const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: deep,
  });
  assert.equal(response.status, 400);
  assert.match(((await response.json()) as { error: { message: string } }).error.message, /nests 10004 levels deep; at most 64/);
});
