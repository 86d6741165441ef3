import assert from "node:assert/strict";
import { test } from "node:test";
import { describeModels, waitUntilReady, type Fetch } from "./readiness.js";

const answering =
  (status: number, body: string): Fetch =>
  async () =>
    new Response(body, { status, headers: { "content-type": "application/json" } });

test("the ready line lists the models when listing is open, and says why not otherwise", async () => {
  const base = "http://127.0.0.1:1";
  assert.equal(await describeModels(base, answering(200, '{"object":"list","data":[{"id":"a"},{"id":"b"}]}')), "models: a, b");
  assert.equal(await describeModels(base, answering(200, '{"object":"list","data":[]}')), "models: none yet");
  assert.equal(
    await describeModels(base, answering(401, '{"error":{"message":"Missing API key","code":"invalid_api_key"}}')),
    "models: listing needs an API key (the gateway's auth is required)",
  );
  assert.equal(await describeModels(base, answering(503, '{"error":{}}')), "models: could not be listed (HTTP 503)");
  assert.equal(await describeModels(base, answering(200, "not json")), "models: could not be listed (an answer without a model list)");
  assert.equal(
    await describeModels(base, answering(200, '{"data":[{"name":"a"}]}')),
    "models: could not be listed (an answer without a model list)",
  );
  assert.equal(
    await describeModels(base, async () => {
      throw new TypeError("fetch failed");
    }),
    "models: could not be listed (fetch failed)",
  );
});

test("readiness waits through refused connections and 503s, and stops waiting when told", async () => {
  const answers: (number | "refused")[] = ["refused", 503, "refused", 503, 200];
  let probes = 0;
  let stillWaiting = 0;
  const ready = await waitUntilReady({
    baseUrl: "http://127.0.0.1:1",
    signal: new AbortController().signal,
    intervalMs: 1,
    stillWaitingMs: 2,
    onStillWaiting: () => {
      stillWaiting += 1;
    },
    fetch: async (url) => {
      assert.equal(url, "http://127.0.0.1:1/readyz");
      const answer = answers[probes++]!;
      if (answer === "refused") throw new TypeError("fetch failed");
      return new Response(null, { status: answer });
    },
  });
  assert.equal(ready, true);
  assert.equal(probes, 5);
  assert.equal(stillWaiting, 2, "told every other probe here");

  const stopping = new AbortController();
  const waiting = waitUntilReady({
    baseUrl: "http://127.0.0.1:1",
    signal: stopping.signal,
    intervalMs: 60_000,
    onStillWaiting: () => {},
    fetch: async () => new Response(null, { status: 503 }),
  });
  stopping.abort();
  assert.equal(await waiting, false);
});
