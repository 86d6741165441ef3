/**
 * Retries before the first token and what a failure after it does. A worker that fails
 * between the router's pick and its first event is a race a live mesh cannot stage on
 * demand, so these workers are fakes: each candidate address scripts its stream.
 */
import assert from "node:assert/strict";
import test from "node:test";
import { ClientError, Status } from "nice-grpc";
import type { GenerateRequest, GenerateResponse } from "../../gen/infermesh/worker/v1/worker_service.js";
import type { MeshClients } from "./clients.js";
import { generate, type GenerationEvent } from "./generation.js";

type Script = (signal: AbortSignal) => AsyncGenerator<GenerateResponse>;

const started: GenerateResponse = { event: { $case: "started", value: { workerId: "w", model: "m", promptTokens: 1, cachedTokens: 0 } } };
const delta: GenerateResponse = {
  event: { $case: "delta", value: { index: 0, text: "hi", reasoningText: "", tokenCount: 1, logprobs: [], toolCalls: [] } },
};
const finished: GenerateResponse = { event: { $case: "finished", value: { finishReason: 1, usage: undefined } } };
const unavailable = () => new ClientError("/Generate", Status.UNAVAILABLE, "draining");

function mesh(scripts: Record<string, Script>) {
  const calls: string[] = [];
  const signals: AbortSignal[] = [];
  const clients = {
    worker: (address: string) => ({
      generate: (_request: GenerateRequest, options: { signal: AbortSignal }) => {
        calls.push(address);
        signals.push(options.signal);
        return scripts[address]!(options.signal);
      },
    }),
  } as unknown as MeshClients;
  return { clients, calls, signals };
}

const pickOf = (...addresses: string[]) => ({
  candidates: addresses.map((address) => ({ workerId: address, address, score: 1, model: "", scores: {} })),
  reason: "",
});
const request = { requestId: "r", model: "m" } as GenerateRequest;
const collect = async (events: AsyncIterable<GenerationEvent>) => {
  const cases: string[] = [];
  for await (const event of events) cases.push(event.$case);
  return cases;
};

test("a worker that fails before its first event is skipped for the next candidate", async () => {
  const { clients, calls } = mesh({
    a: async function* () {
      throw unavailable();
    },
    b: async function* () {
      yield started;
      yield delta;
      yield finished;
    },
  });
  assert.deepEqual(await collect(generate(clients, request, pickOf("a", "b"), { signal: new AbortController().signal })), [
    "started",
    "delta",
    "finished",
  ]);
  assert.deepEqual(calls, ["a", "b"]);
});

test("an engine that fails before producing anything (INTERNAL) is skipped too: a broken canary costs its users a retry, not an error", async () => {
  const { clients, calls } = mesh({
    canary: async function* () {
      throw new ClientError("/Generate", Status.INTERNAL, "the engine failed to start the generation");
    },
    baseline: async function* () {
      yield started;
      yield finished;
    },
  });
  assert.deepEqual(await collect(generate(clients, request, pickOf("canary", "baseline"), { signal: new AbortController().signal })), [
    "started",
    "finished",
  ]);
  assert.deepEqual(calls, ["canary", "baseline"]);
});

test("at most three workers are tried; then the last failure is the answer", async () => {
  const failing: Script = async function* () {
    throw unavailable();
  };
  const { clients, calls } = mesh({ a: failing, b: failing, c: failing, d: failing });
  await assert.rejects(
    collect(generate(clients, request, pickOf("a", "b", "c", "d"), { signal: new AbortController().signal })),
    (error: unknown) => {
      assert.ok(error instanceof ClientError && error.code === Status.UNAVAILABLE);
      return true;
    },
  );
  assert.deepEqual(calls, ["a", "b", "c"]);
});

test("a refusal that is the request's fault is not retried elsewhere", async () => {
  const { clients, calls } = mesh({
    a: async function* () {
      throw new ClientError("/Generate", Status.INVALID_ARGUMENT, "prompt too long");
    },
    b: async function* () {
      yield started;
    },
  });
  await assert.rejects(
    collect(generate(clients, request, pickOf("a", "b"), { signal: new AbortController().signal })),
    (error: unknown) => {
      assert.ok(error instanceof ClientError && error.code === Status.INVALID_ARGUMENT);
      return true;
    },
  );
  assert.deepEqual(calls, ["a"]);
});

test("after the first event a failure ends the stream with an error event, without a retry", async () => {
  const { clients, calls } = mesh({
    a: async function* () {
      yield started;
      yield delta;
      throw unavailable();
    },
    b: async function* () {
      yield started;
    },
  });
  const events: GenerationEvent[] = [];
  for await (const event of generate(clients, request, pickOf("a", "b"), { signal: new AbortController().signal })) events.push(event);
  assert.deepEqual(
    events.map((event) => event.$case),
    ["started", "delta", "error"],
  );
  const last = events.at(-1)!;
  assert.ok(last.$case === "error" && last.value.statusCode === Status.UNAVAILABLE && last.value.retryable);
  assert.deepEqual(calls, ["a"]);
});

test("stopping before the last event cancels the worker's call; stopping at it lets the stream end", async () => {
  let cancelledEarly = false;
  let cancelledAfterEnd = false;
  const { clients } = mesh({
    early: async function* () {
      try {
        yield started;
        yield delta;
        yield delta;
      } finally {
        cancelledEarly = true;
      }
    },
    whole: async function* () {
      yield started;
      yield finished;
      cancelledAfterEnd = false; // reached: the stream was read to its end, not cancelled
    },
  });
  for await (const event of generate(clients, request, pickOf("early"), { signal: new AbortController().signal }))
    if (event.$case === "started") break;
  assert.ok(cancelledEarly, "the worker's stream was closed");
  cancelledAfterEnd = true;
  for await (const event of generate(clients, request, pickOf("whole"), { signal: new AbortController().signal }))
    if (event.$case === "finished") break;
  assert.equal(cancelledAfterEnd, false, "the worker's stream ran to its end");
});
