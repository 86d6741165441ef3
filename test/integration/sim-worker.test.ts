/** A mesh whose worker runs the named GPU simulator instead of a model. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { startTestMesh, type TestMesh } from "../support/harness.js";

let mesh: TestMesh;
let openai: OpenAI;

before(async () => {
  mesh = await startTestMesh({ workerArgs: ["--engine", "sim", "--model-id", "gpt-oss-20b", "--sim-time-scale", "0.05"] });
  openai = new OpenAI({ baseURL: `${mesh.baseUrl}/v1`, apiKey: "local", maxRetries: 0 });
});

after(() => mesh?.stop());

test("/v1/models says the model is served by the sim engine", async () => {
  const models = await openai.models.list();
  const served = models.data.find((model) => model.id === "gpt-oss-20b") as unknown as { engine: string } | undefined;
  assert.equal(served?.engine, "sim");
});

test("a chat through the mesh is answered by the simulator, deterministically for a seed", async () => {
  const ask = () =>
    openai.chat.completions.create({ model: "gpt-oss-20b", messages: [{ role: "user", content: "Hello?" }], max_tokens: 20, seed: 3 });
  const [a, b] = [await ask(), await ask()];
  assert.equal(a.usage?.completion_tokens, 20);
  assert.ok((a.choices[0]?.message.content ?? "").length > 0);
  assert.equal(a.choices[0]?.message.content, b.choices[0]?.message.content);
});
