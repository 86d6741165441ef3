/**
 * What one request can ask of a llama.cpp worker, tried as an attacker would: a prompt
 * that used to crash it, more choices than it has sequences, thousands of messages or
 * embedding inputs. Each answers within seconds, with a clear error or a real answer,
 * and the worker never restarts.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { metricSum, startTestMesh, type TestMesh } from "../support/harness.js";

const model = "infermesh-test";
let mesh: TestMesh;
let workerPid: number | undefined;

before(async () => {
  mesh = await startTestMesh();
  workerPid = mesh.supervisor.pid("worker-0");
});

after(async () => {
  await mesh?.stop();
});

async function post(path: string, body: unknown): Promise<{ status: number; body: any; ms: number }> {
  const started = performance.now();
  const response = await fetch(`${mesh.baseUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json(), ms: performance.now() - started };
}

/** The worker is the same process, and a plain request still gets an answer. */
async function assertWorkerUnharmed(): Promise<void> {
  assert.equal(mesh.supervisor.pid("worker-0"), workerPid, "the worker did not restart");
  const plain = await post("/v1/chat/completions", { model, messages: [{ role: "user", content: "Hello" }], max_tokens: 4 });
  assert.equal(plain.status, 200, JSON.stringify(plain.body));
}

test("a run of 30,000 letters, spaces or marks (which overflowed llama.cpp's regex stack) gets a 400 that names the field, on every API", async () => {
  const cases = [
    {
      path: "/v1/chat/completions",
      body: { model, messages: [{ role: "user", content: "a".repeat(30_000) }], max_tokens: 4 },
      field: /messages\[0\]\.content holds 30000 letters in a row/,
    },
    {
      path: "/v1/completions",
      body: { model, prompt: `hello${" ".repeat(30_000)}world`, max_tokens: 4 },
      field: /prompt holds 30000 whitespace characters in a row at character 5/,
    },
    { path: "/v1/embeddings", body: { model, input: ["fine", "!".repeat(30_000)] }, field: /input\[1\] holds 30000 symbols in a row/ },
  ];
  for (const { path, body, field } of cases) {
    const answer = await post(path, body);
    assert.equal(answer.status, 400, `${path}: ${JSON.stringify(answer.body)}`);
    assert.equal(answer.body.error.type, "invalid_request_error");
    assert.match(answer.body.error.message, field);
  }
  await assertWorkerUnharmed();
});

test("a prompt far longer than the context is refused before it is tokenized", async () => {
  const words = "the quick brown fox jumps over the lazy dog ".repeat(40_000);
  const answer = await post("/v1/completions", { model, prompt: words, max_tokens: 4 });
  assert.equal(answer.status, 400);
  assert.match(answer.body.error.message, /prompt has \d+ characters; this model's context cannot hold more than \d+/);
  await assertWorkerUnharmed();
});

test("n: 16 on a worker with 8 sequences answers all 16 choices (the extra ones queue), and so do two such requests at once", async () => {
  const ask = () => post("/v1/chat/completions", { model, messages: [{ role: "user", content: "Count" }], n: 16, max_tokens: 8, seed: 1 });
  const [first, second] = await Promise.all([ask(), ask()]);
  for (const answer of [first, second]) {
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.deepEqual(
      answer.body.choices.map((choice: { index: number }) => choice.index),
      Array.from({ length: 16 }, (_, index) => index),
    );
    assert.ok(answer.body.choices.every((choice: { finish_reason: string }) => choice.finish_reason === "length"));
  }
  await assertWorkerUnharmed();
});

test("10,000 one-character messages, 2,000 of them, and 2,048 embedding inputs answer within seconds, the worker never wedged", async () => {
  const conversation = (count: number) =>
    Array.from({ length: count }, (_, index) => ({ role: index % 2 === 0 ? "user" : "assistant", content: "x" }));
  const chat = await post("/v1/chat/completions", { model, messages: conversation(10_000), max_tokens: 4 });
  assert.equal(chat.status, 400, JSON.stringify(chat.body));
  assert.match(chat.body.error.message, /at most 2048 messages/);
  assert.equal(chat.body.error.param, "messages");
  // Under the gateway's bound, the worker refuses what its context cannot hold before rendering it.
  const fits = await post("/v1/chat/completions", { model, messages: conversation(2_000), max_tokens: 4 });
  assert.equal(fits.status, 400, JSON.stringify(fits.body));
  assert.match(
    fits.body.error.message,
    /messages: 2000 messages take at least 8000 tokens of the chat template, but the model's context holds 2048/,
  );
  const embeddings = await post("/v1/embeddings", { model, input: Array.from({ length: 2_048 }, (_, index) => `input ${index}`) });
  assert.equal(embeddings.status, 200, JSON.stringify(embeddings.body).slice(0, 300));
  assert.equal(embeddings.body.data.length, 2_048);
  console.log(
    `10,000 messages: HTTP ${chat.status} in ${chat.ms.toFixed(0)} ms; 2,000 messages: HTTP ${fits.status} in ${fits.ms.toFixed(0)} ms; 2,048 embedding inputs: ${embeddings.ms.toFixed(0)} ms`,
  );
  await assertWorkerUnharmed();
  assert.equal(await metricSum(`http://127.0.0.1:${mesh.ports.routerMetrics}/metrics`, "infermesh_router_workers_lost_total"), 0);
});

test("a forced tool call cut short by max_tokens answers the partial call with finish_reason length; streamed, its arguments arrive as deltas", async () => {
  const tools = [
    {
      type: "function",
      function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
    },
  ];
  const body = {
    model,
    messages: [{ role: "user", content: "Weather in Paris?" }],
    tools,
    tool_choice: "required",
    max_tokens: 24,
    seed: 1,
  };
  const whole = await post("/v1/chat/completions", body);
  assert.equal(whole.status, 200, JSON.stringify(whole.body));
  const choice = whole.body.choices[0];
  assert.equal(choice.finish_reason, "length");
  assert.equal(choice.message.content, null);
  assert.equal(choice.message.tool_calls.length, 1);
  assert.equal(choice.message.tool_calls[0].function.name, "get_weather");
  assert.match(choice.message.tool_calls[0].id, /^call_/);
  assert.match(choice.message.tool_calls[0].function.arguments, /^\{"city/, "the arguments generated so far");

  const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...body, stream: true }),
  });
  const chunks = (await response.text())
    .split("\n")
    .filter((line) => line.startsWith("data: {"))
    .map((line) => JSON.parse(line.slice(6)));
  const fragments = chunks.flatMap((chunk) => chunk.choices[0]?.delta.tool_calls ?? []);
  assert.ok(fragments.length > 3, `arguments stream in pieces (${fragments.length} fragments)`);
  assert.equal(fragments[0].index, 0);
  assert.equal(fragments[0].function.name, "get_weather");
  assert.match(fragments[0].id, /^call_/);
  assert.ok(fragments.slice(1).every((fragment: { id?: string; index: number }) => fragment.id === undefined && fragment.index === 0));
  const streamedArguments = fragments.map((fragment: { function: { arguments: string } }) => fragment.function.arguments).join("");
  assert.match(streamedArguments, /^\{"city/);
  assert.equal(chunks.at(-1).choices[0].finish_reason, "length");
});

test("an embeddings call over 300,000 tokens in all is refused at once, before any input is embedded", async () => {
  const input = Array.from({ length: 200 }, () => "hello world ".repeat(600));
  const answer = await post("/v1/embeddings", { model, input });
  assert.equal(answer.status, 400, JSON.stringify(answer.body).slice(0, 300));
  assert.match(answer.body.error.message, /the inputs hold more than 300000 tokens in all/);
  await assertWorkerUnharmed();
});
