import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import { Registry } from "prom-client";
import { SharedRedis } from "../../services/common/redis.js";
import { waitFor } from "../../test/support/harness.js";
import { redisForTests } from "../../test/support/redis.js";
import { ResponseCache } from "../response-cache/response-cache.js";
import { SharedResponseCache } from "../response-cache/shared-response-cache.js";
import { ResponsesStore, type StoredResponse } from "./responses-store.js";
import { SharedResponsesStore } from "./shared-responses-store.js";

// Real Redis (Debian's redis-server): two gateway replicas share what users expect shared.
const redis = redisForTests();

const quiet = pino({ level: "silent" });
const settings = { maxBytes: 1 << 20, tenantMaxBytes: 4_000, ttlMs: 60_000 };

/** One gateway replica's store and cache on the test's Redis. */
async function gateway() {
  const registry = new Registry();
  const connection = new SharedRedis(redis().url, quiet, registry, { what: "responses", fallback: "local" });
  await waitFor("Redis", () => connection.isUp);
  const local = new ResponsesStore(settings, registry);
  return {
    registry,
    store: new SharedResponsesStore(connection, local, settings, local.evictions),
    cache: new SharedResponseCache(connection, new ResponseCache(10_000, 60_000, registry), 10_000, 60_000),
    close: () => connection.close(),
  };
}

const response = (tenantId: string, id: string, previous: string | null = null, text = "hello"): StoredResponse => ({
  tenantId,
  response: {
    id,
    previous_response_id: previous,
    output: [{ id: `out-${id}`, type: "message", content: [{ type: "output_text", text }] }],
  },
  inputItems: [{ id: `in-${id}`, type: "message", content: [{ type: "input_text", text: "hi" }] }],
});

test("a response stored through one gateway is retrieved, continued and deleted through another, and only by its tenant", async () => {
  const a = await gateway();
  const b = await gateway();
  try {
    await a.store.put(response("acme", "resp_1"));
    await a.store.put(response("acme", "resp_2", "resp_1"));
    assert.equal((await b.store.get("acme", "resp_2"))?.response.previous_response_id, "resp_1");
    assert.deepEqual(
      (await b.store.conversation("acme", "resp_2")).map((item) => (item as { id: string }).id),
      ["in-resp_1", "out-resp_1", "in-resp_2", "out-resp_2"],
    );
    assert.deepEqual(await b.store.item("acme", "out-resp_1"), response("acme", "resp_1").response.output[0]);
    // Another tenant's id is not there, exactly like an unknown one.
    assert.equal(await b.store.get("globex", "resp_1"), undefined);
    assert.equal(await b.store.delete("globex", "resp_1"), false);
    await assert.rejects(b.store.conversation("globex", "resp_2"), /Previous response with id 'resp_2' not found/);
    // Deleted through B: gone for A, and a conversation through it names the missing link.
    assert.equal(await b.store.delete("acme", "resp_1"), true);
    assert.equal(await a.store.get("acme", "resp_1"), undefined);
    await assert.rejects(a.store.conversation("acme", "resp_2"), /Response resp_1, which the previous response continues/);
  } finally {
    await a.close();
    await b.close();
  }
});

test("a tenant over its share loses its own oldest responses, never another tenant's", async () => {
  const a = await gateway();
  try {
    const long = "x".repeat(300);
    for (let index = 0; index < 8; index += 1) await a.store.put(response("initech", `resp_i${index}`, null, long));
    await a.store.put(response("umbrella", "resp_u0", null, long));
    for (let index = 8; index < 12; index += 1) await a.store.put(response("initech", `resp_i${index}`, null, long));
    // About 1,600 bytes each against 4,000: the newest two stay, the oldest went.
    assert.equal(await a.store.get("initech", "resp_i0"), undefined);
    assert.ok(await a.store.get("initech", "resp_i11"));
    assert.ok(await a.store.get("umbrella", "resp_u0"), "another tenant's response stays");
    const evicted = await a.registry.getSingleMetric("infermesh_gateway_responses_evicted_total")!.get();
    assert.ok(evicted.values.some((sample) => sample.labels.reason === "evicted" && sample.value >= 9));
  } finally {
    await a.close();
  }
});

test("an answer cached through one gateway is a hit through another", async () => {
  const a = await gateway();
  const b = await gateway();
  try {
    assert.equal(await b.cache.get("key-1"), undefined);
    a.cache.set("key-1", '{"choices":[]}');
    assert.equal(await waitFor("the answer in Redis", () => b.cache.get("key-1")), '{"choices":[]}');
    // Bounded all replicas together: 10,000 bytes hold a few answers of 2,000 characters, oldest dropped first.
    for (let index = 0; index < 6; index += 1) a.cache.set(`big-${index}`, "y".repeat(2_000));
    await waitFor("the last answer stored", () => b.cache.get("big-5"));
    assert.equal(await b.cache.get("big-0"), undefined);
  } finally {
    await a.close();
    await b.close();
  }
});
