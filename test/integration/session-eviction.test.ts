/**
 * Session KV residency on a live mesh with a llama.cpp worker (the tiny test model),
 * whose idle sequences keep their KV: four sessions fill 4 × 256 cells past the 85 %
 * warn line, memory-guard asks the worker to evict the least recently used idle
 * session, and only that session's next request has to compute its prompt again.
 */
import test, { after, before } from "node:test";
import assert from "node:assert/strict";
import { metricSum, startTestMesh, waitFor, type TestMesh } from "../support/harness.js";

let mesh: TestMesh;

before(async () => {
  mesh = await startTestMesh({ workerArgs: ["--context-tokens", "256", "--sequences", "4"] });
});

after(async () => {
  await mesh?.stop();
});

/** About 230 tokens of text that shares no prefix with the other sessions'. */
const promptOf = (session: string) => `${session} ${"tells a long story about the river, the hills and the town. ".repeat(16)}`;

async function complete(session: string): Promise<{ promptTokens: number; cachedTokens: number }> {
  const response = await fetch(`${mesh.baseUrl}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "infermesh-test", prompt: promptOf(session), max_tokens: 2, temperature: 0, user: session }),
  });
  assert.equal(response.status, 200, await response.clone().text());
  const { usage } = (await response.json()) as { usage: { prompt_tokens: number; prompt_tokens_details: { cached_tokens: number } } };
  return { promptTokens: usage.prompt_tokens, cachedTokens: usage.prompt_tokens_details.cached_tokens };
}

test("past the warn line memory-guard evicts the least recently used idle session, and only that one", async () => {
  const memoryMetrics = `http://127.0.0.1:${mesh.ports.memoryGuardMetrics}/metrics`;
  const sessions = ["alice", "bob", "carol", "dave"];
  for (const session of sessions.slice(0, 3)) await complete(session);
  assert.ok((await complete("bob")).cachedTokens > 0, "an idle session's KV is reused while there is room");
  assert.equal(await metricSum(memoryMetrics, "infermesh_memory_session_evictions_total"), 0);
  const { promptTokens } = await complete("dave");
  assert.ok(promptTokens * 4 > 0.85 * 1_024, `four sessions of ${promptTokens} tokens pass 85 % of the KV`);

  await waitFor(
    "memory-guard to evict a session",
    async () => (await metricSum(memoryMetrics, "infermesh_memory_session_evictions_total")) >= 1,
  );
  assert.equal((await complete("alice")).cachedTokens, 0, "alice, idle longest, was evicted");
  assert.ok((await complete("dave")).cachedTokens > 0, "dave, the most recent, kept his KV");
});
