import assert from "node:assert/strict";
import { test } from "node:test";
import type { LlamaContextSequence } from "node-llama-cpp";
import { SequencePool, type PooledSequence } from "./sequence-pool.js";

/** A pool entry; the pool reads only the sequence's cached tokens. */
const pooled = (): PooledSequence => ({
  sequence: { contextTokens: [] } as unknown as LlamaContextSequence,
  busy: false,
  lastUsedAtMs: 0,
  promptTokens: 0,
  sessionId: "",
});

test("when every sequence is busy, waiters get one by urgency, first come first served within one; an aborted waiter leaves", async () => {
  const pool = new SequencePool([pooled()]);
  const held = await pool.acquire(() => 0, new AbortController().signal, 1);
  const served: string[] = [];
  const wait = (name: string, urgency: number, signal = new AbortController().signal) =>
    pool
      .acquire(() => 0, signal, urgency)
      .then(
        (sequence) => {
          served.push(name);
          pool.release(sequence);
        },
        () => served.push(`${name} aborted`),
      );
  const cancel = new AbortController();
  const waits = [
    wait("batch", 2),
    wait("standard", 1),
    wait("interactive", 0, cancel.signal),
    wait("interactive 2", 0),
    wait("standard 2", 1),
  ];
  assert.equal(pool.waitingCount, 5);
  cancel.abort();
  pool.release(held);
  await Promise.all(waits);
  assert.deepEqual(served, ["interactive aborted", "interactive 2", "standard", "standard 2", "batch"]);
  assert.equal(pool.waitingCount, 0);
});
