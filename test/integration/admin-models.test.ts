/**
 * Admin model load and unload on a real llama.cpp worker (the tiny test model): the
 * worker drops or loads a GGUF, the router learns it from the worker's Connect stream,
 * and the OpenAI API follows.
 */
import assert from "node:assert/strict";
import { basename } from "node:path";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { ensureTestModel } from "../../services/worker/engines/llamacpp/test-model/generate.js";
import { startTestMesh, testModelDir, type TestMesh } from "../support/harness.js";

let mesh: TestMesh;
let openai: OpenAI;
const question = [{ role: "user" as const, content: "Say hi" }];

before(async () => {
  mesh = await startTestMesh();
  openai = new OpenAI({ baseURL: `${mesh.baseUrl}/v1`, apiKey: "local", maxRetries: 0 });
});

after(() => mesh?.stop());

const admin = async (path: string, body: unknown = {}) => {
  const response = await fetch(`${mesh.baseUrl}/admin/models/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as any };
};
const served = async () => (await openai.models.list()).data.map((model) => model.id);

test("an admin unloads the served model, loads a GGUF under a new id, and the API follows each change", async () => {
  assert.deepEqual(await served(), ["infermesh-test"]);

  const unloaded = await admin("infermesh-test/unload");
  assert.equal(unloaded.status, 200, JSON.stringify(unloaded.body));
  assert.equal(unloaded.body.unloaded.length, 1);
  assert.deepEqual(await served(), [], "the router no longer lists it");
  await assert.rejects(openai.chat.completions.create({ model: "infermesh-test", messages: question, max_tokens: 2 }), (error: unknown) => {
    assert.ok(error instanceof OpenAI.APIError && error.status === 503, String(error));
    return true;
  });
  assert.equal((await admin("infermesh-test/unload")).status, 404, "nothing serves it any more");

  // Paths are confined to the worker's model directory, and must exist.
  const escaping = await admin("tiny-2/load", { model_path: "../../package.json" });
  assert.equal(escaping.status, 400);
  assert.match(escaping.body.error.message, /inside the worker's model directory/);
  assert.equal((await admin("tiny-2/load", { model_path: "no-such-model.gguf" })).status, 404);
  assert.equal((await admin("tiny-2/load", { model_path: "x.gguf", workers: ["no-such-worker"] })).status, 404);
  assert.equal((await admin("tiny-2/load", {})).status, 400, "model_path is required");

  const model = await ensureTestModel({ cacheDir: testModelDir, size: "tiny", architecture: "gpt-oss", weightType: "f16" });
  const loaded = await admin("tiny-2/load", { model_path: basename(model.path) });
  assert.equal(loaded.status, 200, JSON.stringify(loaded.body));
  assert.deepEqual(loaded.body.loaded, unloaded.body.unloaded);
  assert.deepEqual(await served(), ["tiny-2"]);
  const answer = await openai.chat.completions.create({ model: "tiny-2", messages: question, max_tokens: 4 });
  assert.equal(answer.model, "tiny-2");
  assert.ok(answer.usage!.completion_tokens > 0);

  // One model per worker: loading another while it serves one is refused with the reason.
  const second = await admin("tiny-3/load", { model_path: basename(model.path) });
  assert.equal(second.status, 400);
  assert.match(second.body.error.message, /unload it first/);
  assert.equal((await admin("tiny-2/load", { model_path: basename(model.path) })).status, 200, "loading what it serves is a no-op");
  assert.equal((await admin("tiny-2/frobnicate")).status, 404);
});
