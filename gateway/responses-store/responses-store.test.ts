import assert from "node:assert/strict";
import test from "node:test";
import { Registry } from "prom-client";
import { ManualClock } from "../../services/common/clock.js";
import { ApiError } from "../errors.js";
import { ResponsesStore, type StoredResponse } from "./responses-store.js";

const stored = (tenantId: string, id: string, previous: string | null = null, text = "x"): StoredResponse => ({
  tenantId,
  response: { id, previous_response_id: previous, output: [{ type: "message", text }] },
  inputItems: [{ type: "message", id: `in-${id}` }],
});

const store = (settings: Partial<ConstructorParameters<typeof ResponsesStore>[0]> = {}, clock = new ManualClock()) =>
  new ResponsesStore({ maxBytes: 1_000_000, tenantMaxBytes: 1_000_000, ttlMs: 0, ...settings }, new Registry(), clock);

test("a tenant reads and deletes only its own responses; another tenant's id is not found", () => {
  const responses = store();
  responses.put(stored("a", "resp_1"));
  assert.equal(responses.get("a", "resp_1")?.response.id, "resp_1");
  assert.equal(responses.get("b", "resp_1"), undefined);
  assert.equal(responses.delete("b", "resp_1"), false);
  assert.equal(responses.delete("a", "resp_1"), true);
  assert.equal(responses.get("a", "resp_1"), undefined);
});

test("a conversation is every earlier turn's input and output, oldest first; a missing link is a 404 naming it", () => {
  const responses = store();
  responses.put(stored("a", "r1"));
  responses.put(stored("a", "r2", "r1"));
  responses.put(stored("a", "r3", "r2"));
  assert.deepEqual(
    responses.conversation("a", "r3").map((item) => (item as { id?: string; type: string }).id ?? "out"),
    ["in-r1", "out", "in-r2", "out", "in-r3", "out"],
  );
  assert.throws(
    () => responses.conversation("b", "r3"),
    (error) => error instanceof ApiError && error.status === 5 && error.details.param === "previous_response_id",
  );
  responses.delete("a", "r1");
  assert.throws(() => responses.conversation("a", "r3"), /Response r1, which the previous response continues, with id 'r1' not found/);
});

test("a tenant over its share loses its own oldest responses, never another tenant's", () => {
  const big = "y".repeat(1_000);
  const responses = store({ tenantMaxBytes: 10_000 });
  responses.put(stored("quiet", "q1", null, big));
  for (let index = 0; index < 20; index += 1) responses.put(stored("loud", `l${index}`, null, big));
  assert.ok(responses.get("quiet", "q1"), "the other tenant's response stays");
  assert.equal(responses.get("loud", "l0"), undefined, "the oldest went");
  assert.ok(responses.get("loud", "l19"));
});

test("a response expires a TTL after its last use", () => {
  const clock = new ManualClock();
  const responses = store({ ttlMs: 1_000 }, clock);
  responses.put(stored("a", "r1"));
  clock.advance(900);
  assert.ok(responses.get("a", "r1"), "a use renews it");
  clock.advance(900);
  assert.ok(responses.get("a", "r1"));
  clock.advance(1_001);
  assert.equal(responses.get("a", "r1"), undefined);
});

test("a stored item is found by its id for its tenant only, until its response goes", () => {
  const responses = store();
  responses.put({
    tenantId: "a",
    response: { id: "r1", previous_response_id: null, output: [{ type: "message", id: "msg_1" }] },
    inputItems: [],
  });
  assert.deepEqual(responses.item("a", "msg_1"), { type: "message", id: "msg_1" });
  assert.equal(responses.item("b", "msg_1"), undefined);
  responses.delete("a", "r1");
  assert.equal(responses.item("a", "msg_1"), undefined);
});
