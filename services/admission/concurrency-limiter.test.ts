import test from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../common/clock.js";
import { ConcurrencyLimiter, type Slot, type SlotOutcome, type SlotTicket } from "./concurrency-limiter.js";

const never = new AbortController().signal;

function setup(capacity = 2, maxQueue = 10) {
  const clock = new ManualClock();
  return { clock, limiter: new ConcurrencyLimiter(capacity, maxQueue, clock) };
}

async function granted(ticket: SlotTicket): Promise<Slot> {
  const outcome = await ticket.outcome;
  assert.equal(outcome.kind, "granted");
  return (outcome as Extract<SlotOutcome, { kind: "granted" }>).slot;
}

async function rejected(ticket: SlotTicket): Promise<string> {
  const outcome = await ticket.outcome;
  assert.equal(outcome.kind, "rejected");
  return (outcome as Extract<SlotOutcome, { kind: "rejected" }>).reason;
}

/** Whether the ticket's outcome has settled, after letting pending callbacks run. */
async function isSettled(ticket: SlotTicket): Promise<boolean> {
  let settled = false;
  ticket.outcome.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

test("grants up to capacity at once, then queues with a position", async () => {
  const { limiter } = setup(2);
  const a = limiter.request(1_000, never);
  const b = limiter.request(1_000, never);
  assert.equal(a.queuePosition, undefined);
  assert.equal(b.queuePosition, undefined);
  assert.equal((await granted(a)).queuedMs, 0);
  await granted(b);
  assert.equal(limiter.inFlightCount, 2);

  const c = limiter.request(1_000, never);
  const d = limiter.request(1_000, never);
  assert.equal(c.queuePosition, 0);
  assert.equal(d.queuePosition, 1);
  assert.equal(limiter.queuedCount, 2);
  assert.equal(await isSettled(c), false);
});

test("release admits waiters first-in first-out; queuedMs is the time waited", async () => {
  const { clock, limiter } = setup(1);
  const first = await granted(limiter.request(10_000, never));
  clock.advance(100);
  const second = limiter.request(10_000, never);
  clock.advance(50);
  const third = limiter.request(10_000, never);
  clock.advance(250);

  first.release();
  const secondSlot = await granted(second);
  assert.equal(secondSlot.queuedMs, 300);
  assert.equal(await isSettled(third), false);
  assert.equal(limiter.inFlightCount, 1);

  clock.advance(40);
  secondSlot.release();
  assert.equal((await granted(third)).queuedMs, 290);
  assert.equal(limiter.queuedCount, 0);
});

test("a queued request times out after exactly its queue timeout", async () => {
  const { clock, limiter } = setup(1);
  await granted(limiter.request(1_000, never));
  const waiting = limiter.request(500, never);
  clock.advance(499);
  assert.equal(await isSettled(waiting), false);
  clock.advance(1);
  assert.equal(await rejected(waiting), "queue_timeout");
  assert.equal(limiter.queuedCount, 0);
});

test("an aborted waiter leaves the queue; the others move up and it is never granted", async () => {
  const { limiter } = setup(1);
  const holder = await granted(limiter.request(1_000, never));
  const controller = new AbortController();
  const aborted = limiter.request(1_000, controller.signal);
  const next = limiter.request(1_000, never);

  const reason = new Error("client went away");
  controller.abort(reason);
  await assert.rejects(aborted.outcome, reason);
  assert.equal(limiter.queuedCount, 1);
  assert.equal(limiter.request(1_000, never).queuePosition, 1); // next is now at 0

  holder.release();
  await granted(next);
  assert.equal(limiter.inFlightCount, 1);
});

test("a request with an already-aborted signal is rejected and not queued", async () => {
  const { limiter } = setup(1);
  await granted(limiter.request(1_000, never));
  const ticket = limiter.request(1_000, AbortSignal.abort(new Error("gone")));
  await assert.rejects(ticket.outcome, /gone/);
  assert.equal(limiter.queuedCount, 0);
});

test("a full queue rejects at once with queue_full", async () => {
  const { limiter } = setup(1, 1);
  await granted(limiter.request(1_000, never));
  limiter.request(1_000, never);
  const overflow = limiter.request(1_000, never);
  assert.equal(overflow.queuePosition, undefined);
  assert.equal(await rejected(overflow), "queue_full");
  assert.equal(limiter.queuedCount, 1);
});

test("close() rejects queued and later requests; granted slots stay until released", async () => {
  const { limiter } = setup(1);
  const held = await granted(limiter.request(1_000, never));
  const queued = limiter.request(1_000, never);

  limiter.close();
  assert.equal(await rejected(queued), "shutting_down");
  assert.equal(await rejected(limiter.request(1_000, never)), "shutting_down");
  assert.equal(limiter.inFlightCount, 1);

  held.release();
  assert.equal(limiter.inFlightCount, 0);
  assert.equal(await rejected(limiter.request(1_000, never)), "shutting_down");
});

test("release is idempotent: a double release frees one slot", async () => {
  const { limiter } = setup(2);
  const a = await granted(limiter.request(1_000, never));
  await granted(limiter.request(1_000, never));
  const w1 = limiter.request(1_000, never);
  const w2 = limiter.request(1_000, never);

  a.release();
  a.release();
  await granted(w1);
  assert.equal(await isSettled(w2), false);
  assert.equal(limiter.inFlightCount, 2);
  assert.equal(limiter.queuedCount, 1);
});
