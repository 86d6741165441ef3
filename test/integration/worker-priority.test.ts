/** The priority class reaches the GPU: on a full worker, a person's request overtakes batch work. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { startTestMesh, type TestMesh } from "../support/harness.js";

let mesh: TestMesh;
let openai: OpenAI;

before(async () => {
  // One sequence at a time, in (about) H100 time ×2: a 500-token answer takes a few seconds.
  mesh = await startTestMesh({
    workerArgs: [
      "--engine",
      "sim",
      "--model-id",
      "gpt-oss-20b",
      "--sim-time-scale",
      "2",
      "--sim-max-batch",
      "1",
      "--sim-answer-tokens-min",
      "500",
      "--sim-answer-tokens-max",
      "500",
    ],
  });
  openai = new OpenAI({ baseURL: `${mesh.baseUrl}/v1`, apiKey: "local", maxRetries: 0 });
});

after(() => mesh?.stop());

test("an interactive request preempts a batch generation holding the worker's only sequence; the batch one resumes and completes", async () => {
  const messages = [{ role: "user" as const, content: "Write a long report." }];
  const bulk = await openai.chat.completions.create(
    { model: "gpt-oss-20b", messages, max_tokens: 500, stream: true, stream_options: { include_usage: true } },
    { headers: { "x-infermesh-priority": "batch" } },
  );
  let bulkEnded = false;
  let bulkTokens = 0;
  const iterator = bulk[Symbol.asyncIterator]();
  await iterator.next();
  const bulkDone = (async () => {
    for (let chunk = await iterator.next(); !chunk.done; chunk = await iterator.next())
      bulkTokens = chunk.value.usage?.completion_tokens ?? bulkTokens;
    bulkEnded = true;
  })();

  const person = await openai.chat.completions.create(
    { model: "gpt-oss-20b", messages: [{ role: "user", content: "Quick question?" }], max_tokens: 5 },
    { headers: { "x-infermesh-priority": "interactive" } },
  );
  assert.equal(person.usage?.completion_tokens, 5);
  assert.equal(bulkEnded, false, "the interactive answer came while the batch one was still generating, not after it");
  await bulkDone;
  assert.equal(bulkTokens, 500, "the preempted batch generation recomputed and finished whole");
});
