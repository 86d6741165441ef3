import assert from "node:assert/strict";
import test from "node:test";
import { pushable } from "it-pushable";
import { Registry } from "prom-client";
import type { GenerationEvent } from "../mesh/generation.js";
import { SharedGenerations } from "./shared-generations.js";

const text = (value: string): GenerationEvent => ({
  $case: "delta",
  value: { text: value, tokenCount: 1, index: 0, reasoningText: "", logprobs: [], toolCalls: [] },
});

/** A generation the test drives by hand, and how often one was started. */
function source() {
  const events = pushable<GenerationEvent>({ objectMode: true });
  const started: AbortSignal[] = [];
  const start = (signal: AbortSignal) => {
    started.push(signal);
    signal.addEventListener("abort", () => events.end(signal.reason as Error), { once: true });
    return (async function* () {
      yield* events;
    })();
  };
  return { events, started, start };
}

const read = async (events: AsyncGenerator<GenerationEvent>) => {
  const texts: string[] = [];
  for await (const event of events) if (event.$case === "delta") texts.push(event.value.text);
  return texts;
};

test("a request attaching late reads the shared generation from its start; only one generation runs", async () => {
  const registry = new Registry();
  const shared = new SharedGenerations(registry);
  const { events, started, start } = source();
  const first = shared.run("k", start, new AbortController().signal);
  events.push(text("a"));
  assert.equal((await first.next()).value?.$case, "delta");
  const second = read(shared.run("k", start, new AbortController().signal));
  events.push(text("b"));
  events.end();
  assert.deepEqual(await read(first), ["b"]);
  assert.deepEqual(await second, ["a", "b"]);
  assert.equal(started.length, 1);
  const counts = (await registry.getSingleMetric("infermesh_gateway_dedupe_requests_total")!.get()).values;
  assert.deepEqual(
    counts.map((value) => [value.labels.outcome, value.value]),
    [
      ["led", 1],
      ["attached", 1],
    ],
  );
  // Ended: the next identical request generates anew.
  const again = source();
  again.events.end();
  await read(shared.run("k", again.start, new AbortController().signal));
  assert.equal(again.started.length, 1);
});

test("the leader's caller leaving does not stop the others; the last one leaving stops the generation", async () => {
  const shared = new SharedGenerations(new Registry());
  const { events, started, start } = source();
  const leader = new AbortController();
  const leading = shared.run("k", start, leader.signal);
  const follower = new AbortController();
  const following = shared.run("k", start, follower.signal);
  events.push(text("a"));
  await leading.next();
  await following.next();
  leader.abort(new Error("client went away"));
  await assert.rejects(leading.next(), /client went away/);
  events.push(text("b"));
  assert.equal((await following.next()).value?.$case, "delta", "the follower still reads");
  assert.equal(started[0]!.aborted, false);
  await following.return(undefined);
  assert.equal(started[0]!.aborted, true, "nobody reads: the generation is stopped");
});

test("a failure reaches every reader", async () => {
  const shared = new SharedGenerations(new Registry());
  const { events, start } = source();
  const readers = [read(shared.run("k", start, new AbortController().signal)), read(shared.run("k", start, new AbortController().signal))];
  events.end(new Error("worker lost"));
  for (const reader of readers) await assert.rejects(reader, /worker lost/);
});
