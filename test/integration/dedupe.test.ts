/**
 * Identical requests in flight share one generation (the gateway's dedupeRequests,
 * opted into per key): a sim worker in real time, so a generation lasts long enough for
 * others to arrive while it runs.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { metricSum, startTestMesh, type TestMesh } from "../support/harness.js";

const model = "sim-gpt-oss-20b";
const keys = { sharing: "sk-test-sharing-0000000000001", solo: "sk-test-solo-000000000000002" };
let mesh: TestMesh;

before(async () => {
  const config = join(mkdtempSync(join(tmpdir(), "infermesh-dedupe-")), "gateway.json");
  writeFileSync(
    config,
    JSON.stringify({
      auth: "required",
      dedupeRequests: true,
      apiKeys: [
        { name: "sharing", key: keys.sharing, tenant: "sharing", dedupeRequests: true },
        { name: "solo", key: keys.solo, tenant: "solo" },
      ],
    }),
  );
  // Real time: about 350 tokens a second, so 300 tokens take most of a second.
  mesh = await startTestMesh({
    workerArgs: ["--engine", "sim", "--sim-time-scale", "1", "--sim-answer-tokens-min", "300", "--sim-answer-tokens-max", "300"],
    gatewayArgs: ["--config", config],
  });
});

after(() => mesh?.stop());

const client = (key: string) => new OpenAI({ baseURL: `${mesh.baseUrl}/v1`, apiKey: key, maxRetries: 0 });
const ask = { model, messages: [{ role: "user" as const, content: "Tell me about Paris." }], temperature: 0, max_tokens: 300 };
const generations = () => metricSum(`http://127.0.0.1:${mesh.ports.workerMetricsBase}/metrics`, "infermesh_worker_generations_total");
const dedupe = async (outcome: string) => {
  const text = await fetch(`${mesh.baseUrl}/metrics`).then((response) => response.text());
  const line = text
    .split("\n")
    .find((candidate) => candidate.startsWith("infermesh_gateway_dedupe_requests_total{") && candidate.includes(`outcome="${outcome}"`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(" ") + 1));
};

test("identical deterministic requests that arrive while one runs get its answer, from one generation", async () => {
  const sharing = client(keys.sharing);
  const before = await generations();
  // The first request is running once its first chunk has come.
  const stream = await sharing.chat.completions.create({ ...ask, stream: true });
  const iterator = stream[Symbol.asyncIterator]();
  let streamed = "";
  while (streamed === "") {
    const next = await iterator.next();
    assert.ok(!next.done, "the answer has text");
    streamed += next.value.choices[0]?.delta.content ?? "";
  }
  const attached = await Promise.all([sharing.chat.completions.create(ask), sharing.chat.completions.create(ask)]);
  for await (const chunk of { [Symbol.asyncIterator]: () => iterator }) streamed += chunk.choices[0]?.delta.content ?? "";
  for (const completion of attached) assert.equal(completion.choices[0]!.message.content, streamed, "the same answer");
  assert.equal(await generations(), before + 1, "one generation served three requests");
  assert.equal(await dedupe("attached"), 2);

  // Another tenant, a key that did not opt in, a sampled request, or no-cache: generations of their own.
  const solo = client(keys.solo);
  const running = sharing.chat.completions.create(ask);
  await Promise.all([
    solo.chat.completions.create(ask),
    sharing.chat.completions.create({ ...ask, temperature: 1 }),
    sharing.chat.completions.create(ask, { headers: { "cache-control": "no-cache" } }),
  ]);
  await running;
  assert.equal(await generations(), before + 5);
  assert.equal(await dedupe("attached"), 2);
});
