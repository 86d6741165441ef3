import assert from "node:assert/strict";
import test from "node:test";
import { PressureLevel } from "../../gen/infermesh/common/v1/common.js";
import { ManualClock } from "../common/clock.js";
import { MemoryGate } from "./memory-gate.js";
import type { PerClass } from "../common/priority-classes.js";
import { Scheduler, type QueuePlace, type Slot, type SlotOutcome, type SlotRequest } from "./scheduler.js";

const never = new AbortController().signal;

function setup(
  options: {
    capacity?: number;
    maxQueue?: number;
    maxQueuePerClass?: Partial<PerClass<number>>;
    queuedUpdateMs?: number;
    interactiveHeadroom?: number;
    interactiveBurst?: number;
    admitWithinShare?: number;
  } = {},
) {
  const clock = new ManualClock();
  const scheduler = new Scheduler({
    capacity: options.capacity ?? 1,
    maxQueue: options.maxQueue ?? 100,
    maxQueuePerClass: { interactive: 100, standard: 100, batch: 100, ...options.maxQueuePerClass },
    queuedUpdateMs: options.queuedUpdateMs ?? 500,
    clock,
    interactiveHeadroom: options.interactiveHeadroom ?? 0,
    interactiveWindowMs: 30_000,
    interactiveBurst: options.interactiveBurst,
    admitWithinShare: options.admitWithinShare,
  });
  return { clock, scheduler };
}

/** One request as a caller sees it: its Queued events and its outcome. */
interface Ticket {
  readonly name: string;
  readonly places: QueuePlace[];
  readonly outcome: Promise<SlotOutcome>;
}

function ask(scheduler: Scheduler, name: string, request: Partial<SlotRequest> = {}, signal: AbortSignal = never): Ticket {
  const places: QueuePlace[] = [];
  const full: SlotRequest = { tenantId: "t", className: "standard", kvNeedTokens: 0, queueTimeoutMs: 60_000, ...request };
  return { name, places, outcome: scheduler.request(full, signal, (place) => places.push(place)) };
}

async function granted(ticket: Ticket): Promise<Slot> {
  const outcome = await ticket.outcome;
  assert.equal(outcome.kind, "granted", `${ticket.name}: ${JSON.stringify(outcome)}`);
  return (outcome as Extract<SlotOutcome, { kind: "granted" }>).slot;
}

async function rejected(ticket: Ticket): Promise<Extract<SlotOutcome, { kind: "rejected" }>> {
  const outcome = await ticket.outcome;
  assert.equal(outcome.kind, "rejected", `${ticket.name}: ${JSON.stringify(outcome)}`);
  return outcome as Extract<SlotOutcome, { kind: "rejected" }>;
}

/** Whether the ticket's outcome has settled, after letting pending callbacks run. */
async function isSettled(ticket: Ticket): Promise<boolean> {
  let settled = false;
  ticket.outcome.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

/** Releases each grant as it comes, and returns the order in which `tickets` were granted. */
async function grantOrder(first: Slot, tickets: readonly Ticket[]): Promise<string[]> {
  const order: string[] = [];
  let holder = first;
  for (let round = 0; round < tickets.length; round += 1) {
    holder.release();
    const settled = [];
    for (const ticket of tickets) if (!order.includes(ticket.name) && (await isSettled(ticket))) settled.push(ticket);
    assert.equal(settled.length, 1, "one release grants one waiter");
    order.push(settled[0]!.name);
    holder = await granted(settled[0]!);
  }
  return order;
}

test("grants up to capacity at once without a Queued event, then queues with a position and an estimated wait", async () => {
  const { scheduler } = setup({ capacity: 2 });
  const a = ask(scheduler, "a");
  const b = ask(scheduler, "b");
  assert.equal((await granted(a)).queuedMs, 0);
  await granted(b);
  assert.deepEqual([a.places, b.places], [[], []]);
  const c = ask(scheduler, "c");
  const d = ask(scheduler, "d", { tenantId: "t" });
  // No hold measured yet: one second assumed, two slots freeing.
  assert.deepEqual(c.places, [{ position: 0, estimatedWaitMs: 500 }]);
  assert.deepEqual(d.places, [{ position: 1, estimatedWaitMs: 1_000 }]);
  assert.equal(scheduler.queuedOf("standard"), 2);
  assert.equal(scheduler.inFlightOf("standard"), 2);
  assert.equal(await isSettled(c), false);
});

test("a release grants the next waiter; queuedMs is the time it waited and the hold time feeds the estimates", async () => {
  const { clock, scheduler } = setup();
  const first = await granted(ask(scheduler, "first"));
  clock.advance(100);
  const second = ask(scheduler, "second");
  clock.advance(300);
  first.release();
  const secondSlot = await granted(second);
  assert.equal(secondSlot.queuedMs, 300);
  assert.equal(scheduler.meanHoldMs, 400, "the first measured hold replaces the assumed one");
  const third = ask(scheduler, "third");
  assert.deepEqual(third.places, [{ position: 0, estimatedWaitMs: 400 }]);
  secondSlot.release();
  await granted(third);
  assert.equal(scheduler.inFlightOf("standard"), 1);
  assert.equal(scheduler.queuedOf("standard"), 0);
});

test("strict priority: with one slot, an interactive request queued after a batch one is granted first", async () => {
  const { scheduler } = setup();
  const holder = await granted(ask(scheduler, "holder", { className: "standard" }));
  const batch = ask(scheduler, "batch", { className: "batch" });
  const standard = ask(scheduler, "standard", { className: "standard" });
  const interactive = ask(scheduler, "interactive", { className: "interactive" });
  assert.deepEqual(interactive.places, [{ position: 0, estimatedWaitMs: 1_000 }], "it goes ahead of both");
  assert.deepEqual(await grantOrder(holder, [batch, standard, interactive]), ["interactive", "standard", "batch"]);
});

test("fairness: tenant B's one request is served within the first two grants although tenant A queued twenty before it", async () => {
  const { scheduler } = setup();
  const holder = await granted(ask(scheduler, "holder"));
  const flood = Array.from({ length: 20 }, (_, index) => ask(scheduler, `a${index}`, { tenantId: "A" }));
  const single = ask(scheduler, "b", { tenantId: "B" });
  assert.equal(single.places[0]!.position, 1, "B is told it is second in line");
  const order = await grantOrder(holder, [...flood, single]);
  assert.ok(order.indexOf("b") <= 1, order.join(","));
  assert.deepEqual(
    order.filter((name) => name !== "b"),
    flood.map((ticket) => ticket.name),
    "A's own requests stay in order",
  );
});

test("a queued request times out after exactly its queue timeout and frees its place", async () => {
  const { clock, scheduler } = setup();
  await granted(ask(scheduler, "holder"));
  const waiting = ask(scheduler, "waiting", { queueTimeoutMs: 500 });
  const behind = ask(scheduler, "behind");
  clock.advance(499);
  assert.equal(await isSettled(waiting), false);
  clock.advance(1);
  assert.equal((await rejected(waiting)).rejection, "queue_timeout");
  assert.equal(scheduler.queuedOf("standard"), 1);
  clock.advance(500);
  assert.deepEqual(behind.places.at(-1), { position: 0, estimatedWaitMs: 1_000 }, "the one behind moved up");
});

test("a cancelled waiter leaves the queue at once, is never granted, and those behind move up", async () => {
  const { clock, scheduler } = setup();
  const holder = await granted(ask(scheduler, "holder"));
  const controller = new AbortController();
  const cancelled = ask(scheduler, "cancelled", {}, controller.signal);
  const next = ask(scheduler, "next");
  assert.equal(next.places[0]!.position, 1);
  const reason = new Error("client went away");
  controller.abort(reason);
  await assert.rejects(cancelled.outcome, reason);
  assert.equal(scheduler.queuedOf("standard"), 1);
  clock.advance(500);
  assert.equal(next.places.at(-1)!.position, 0);
  holder.release();
  await granted(next);
  assert.equal(scheduler.inFlightOf("standard"), 1);
});

test("a request whose signal is already aborted is refused and not queued", async () => {
  const { scheduler } = setup();
  await granted(ask(scheduler, "holder"));
  const ticket = ask(scheduler, "gone", {}, AbortSignal.abort(new Error("gone")));
  await assert.rejects(ticket.outcome, /gone/);
  assert.equal(scheduler.queuedOf("standard"), 0);
});

test("each class's queue is bounded on its own", async () => {
  const { scheduler } = setup({ maxQueuePerClass: { batch: 1 } });
  await granted(ask(scheduler, "holder"));
  ask(scheduler, "batch", { className: "batch" });
  const overflow = ask(scheduler, "overflow", { className: "batch" });
  assert.equal(await isSettled(overflow), true, "refused at once");
  assert.equal((await rejected(overflow)).rejection, "queue_full");
  assert.equal(overflow.places.length, 0);
  const standard = ask(scheduler, "standard");
  assert.equal(await isSettled(standard), false, "other classes still queue");
});

test("at a full queue an interactive arrival sheds the batch waiter served last; a batch arrival is refused", async () => {
  const { scheduler } = setup({ maxQueue: 3 });
  const holder = await granted(ask(scheduler, "holder"));
  const early = ask(scheduler, "early", { className: "batch", tenantId: "A" });
  const late = ask(scheduler, "late", { className: "batch", tenantId: "A" });
  const other = ask(scheduler, "other", { className: "batch", tenantId: "B" });
  const refused = ask(scheduler, "refused", { className: "batch", tenantId: "C" });
  assert.equal((await rejected(refused)).rejection, "queue_full");

  const urgent = ask(scheduler, "urgent", { className: "interactive" });
  assert.equal(await isSettled(late), true, "shed at once");
  const shed = await rejected(late);
  assert.equal(shed.rejection, "shed_for_urgent");
  assert.ok(shed.retryAfterMs > 0);
  assert.equal(urgent.places[0]!.position, 0);
  assert.equal(scheduler.queuedOf("batch"), 2);
  assert.deepEqual(await grantOrder(holder, [early, other, urgent]), ["urgent", "early", "other"]);
});

test("at a full queue holding only as urgent waiters, the arrival is refused and nobody is shed", async () => {
  const { scheduler } = setup({ maxQueue: 1 });
  await granted(ask(scheduler, "holder"));
  const waiting = ask(scheduler, "waiting", { className: "interactive" });
  const arrival = ask(scheduler, "arrival", { className: "standard" });
  assert.equal((await rejected(arrival)).rejection, "queue_full");
  assert.equal(await isSettled(waiting), false);
});

test("early shedding: once holds are measured, a request that would outwait its timeout is refused at arrival", async () => {
  const { clock, scheduler } = setup();
  const first = await granted(ask(scheduler, "first"));
  // Before any release the hold time is a guess (1 s, over this timeout): nobody is shed on a guess.
  const unmeasured = ask(scheduler, "unmeasured", { queueTimeoutMs: 500 });
  assert.equal(await isSettled(unmeasured), false);
  clock.advance(400);
  first.release(); // measured hold: 400 ms
  const holder = await granted(unmeasured);

  const hopeless = ask(scheduler, "hopeless", { queueTimeoutMs: 300 });
  assert.equal(await isSettled(hopeless), true, "refused without waiting for its timeout");
  const shed = await rejected(hopeless);
  assert.equal(shed.rejection, "shed_early");
  assert.equal(shed.retryAfterMs, 100, "estimated 400 ms against a 300 ms timeout");

  const patient = ask(scheduler, "patient", { queueTimeoutMs: 500 });
  const tooFar = ask(scheduler, "too-far", { queueTimeoutMs: 500 });
  assert.equal(await isSettled(patient), false, "400 ms fits 500");
  assert.equal((await rejected(tooFar)).rejection, "shed_early", "second in line: 800 ms does not");
  holder.release();
  await granted(patient);
});

test("admitWithinShare keeps a margin: a request queues only if its estimated wait is within that share of its timeout", async () => {
  const { clock, scheduler } = setup({ admitWithinShare: 0.5 });
  const first = await granted(ask(scheduler, "first"));
  clock.advance(400);
  first.release(); // measured hold: 400 ms
  const holder = await granted(ask(scheduler, "holder"));
  const tight = ask(scheduler, "tight", { queueTimeoutMs: 600 });
  const shed = await rejected(tight);
  assert.equal(shed.rejection, "shed_early", "400 ms would fit 600 ms, but not half of it");
  assert.equal(shed.retryAfterMs, 100);
  const roomy = ask(scheduler, "roomy", { queueTimeoutMs: 800 });
  assert.equal(await isSettled(roomy), false, "400 ms is within half of 800 ms");
  holder.release();
  await granted(roomy);
});

test("queue positions are reported when they change, at most once per interval, and the latest always arrives", async () => {
  const { clock, scheduler } = setup({ queuedUpdateMs: 500 });
  const holder = await granted(ask(scheduler, "holder"));
  const waiters = Array.from({ length: 4 }, (_, index) => ask(scheduler, `w${index}`));
  const last = waiters[3]!;
  assert.deepEqual(
    last.places.map((place) => place.position),
    [3],
  );

  clock.advance(100);
  holder.release(); // w0 granted: last is now at 2, but 100 ms after its first event
  assert.equal(last.places.length, 1, "throttled");
  clock.advance(399);
  assert.equal(last.places.length, 1);
  clock.advance(1);
  assert.deepEqual(
    last.places.map((place) => place.position),
    [3, 2],
  );

  const w0 = await granted(waiters[0]!);
  clock.advance(10);
  w0.release(); // last at 1
  (await granted(waiters[1]!)).release(); // last at 0: two moves inside one interval
  clock.advance(600);
  assert.deepEqual(
    last.places.map((place) => place.position),
    [3, 2, 0],
    "one update with the latest position",
  );
  clock.advance(5_000);
  assert.equal(last.places.length, 3, "no update without a change");
});

test("a less urgent arrival does not move a waiter; a more urgent one does", async () => {
  const { clock, scheduler } = setup({ queuedUpdateMs: 0 });
  await granted(ask(scheduler, "holder"));
  const standard = ask(scheduler, "standard");
  ask(scheduler, "batch", { className: "batch" });
  clock.advance(1);
  assert.deepEqual(
    standard.places.map((place) => place.position),
    [0],
  );
  ask(scheduler, "interactive", { className: "interactive" });
  clock.advance(1);
  assert.deepEqual(
    standard.places.map((place) => place.position),
    [0, 1],
  );
});

test("close() refuses queued and later requests; granted slots stay until released", async () => {
  const { scheduler } = setup();
  const held = await granted(ask(scheduler, "held"));
  const queued = ask(scheduler, "queued", { className: "batch" });
  scheduler.close();
  assert.equal((await rejected(queued)).rejection, "shutting_down");
  assert.equal((await rejected(ask(scheduler, "later"))).rejection, "shutting_down");
  assert.equal(scheduler.inFlightOf("standard"), 1);
  held.release();
  assert.equal(scheduler.inFlightOf("standard"), 0);
});

test("a double release frees one slot; per-class counts and the oldest wait follow", async () => {
  const { clock, scheduler } = setup({ capacity: 2 });
  const a = await granted(ask(scheduler, "a", { className: "interactive" }));
  await granted(ask(scheduler, "b", { className: "batch" }));
  const w1 = ask(scheduler, "w1", { className: "batch" });
  clock.advance(250);
  const w2 = ask(scheduler, "w2", { className: "batch" });
  assert.equal(scheduler.oldestQueuedAgeMs("batch"), 250);
  assert.equal(scheduler.oldestQueuedAgeMs("interactive"), 0);
  a.release();
  a.release();
  await granted(w1);
  assert.equal(await isSettled(w2), false);
  assert.deepEqual([scheduler.inFlightOf("interactive"), scheduler.inFlightOf("batch"), scheduler.queuedOf("batch")], [0, 2, 1]);
});

/** A scheduler gated by a real MemoryGate whose snapshots the test feeds. */
function gated(options: { capacity?: number; staleMs?: number } = {}) {
  const clock = new ManualClock();
  const memory = new MemoryGate(clock, { staleMs: options.staleMs ?? 10_000, batchHeadroomRatio: 0.15 }, {
    info: () => undefined,
    warn: () => undefined,
  } as never);
  const scheduler = new Scheduler({
    capacity: options.capacity ?? 8,
    maxQueue: 100,
    maxQueuePerClass: { interactive: 100, standard: 100, batch: 100 },
    queuedUpdateMs: 500,
    clock,
    memory,
  });
  const fleet = (usedTokens: number, level = PressureLevel.PRESSURE_LEVEL_NORMAL, totalTokens = 1_000) =>
    memory.update({
      devices: [{ workerId: "w", device: "cuda:0", kvUsedTokens: usedTokens, kvTotalTokens: totalTokens, level }],
      maxLevel: level,
      fleetFreeTokens: totalTokens - usedTokens,
    });
  return { clock, memory, scheduler, fleet };
}

test("memory: a request whose KV does not fit waits, and is granted when a snapshot frees room or a grant is released", async () => {
  const { scheduler, fleet } = gated();
  fleet(0);
  const first = await granted(ask(scheduler, "first", { kvNeedTokens: 600 }));
  const second = ask(scheduler, "second", { kvNeedTokens: 600 });
  assert.equal(await isSettled(second), false, "held, not rejected, though seven slots are free");
  assert.deepEqual(second.places, [{ position: 0, estimatedWaitMs: 125 }]);
  fleet(600); // the worker reported the first: still no room
  assert.equal(await isSettled(second), false);
  fleet(300);
  const secondSlot = await granted(second);

  const third = ask(scheduler, "third", { kvNeedTokens: 500 });
  assert.equal(await isSettled(third), false, "600 granted since the snapshot of 700 free");
  secondSlot.release(); // it never reached a worker: no snapshot will count it
  await granted(third);
  first.release();
});

test("memory: the next request in order waits for room and nothing smaller behind it passes it", async () => {
  const { scheduler, fleet } = gated();
  fleet(500);
  const big = ask(scheduler, "big", { className: "interactive", kvNeedTokens: 800 });
  const small = ask(scheduler, "small", { className: "standard", kvNeedTokens: 10 });
  assert.equal(await isSettled(small), false, "it would fit, but the interactive request is ahead of it");
  fleet(0);
  await granted(big);
  await granted(small);
});

test("memory: at WARN queued batch requests are shed and new ones refused at once; other classes wait as before", async () => {
  const { scheduler, fleet } = gated();
  fleet(700);
  const batch = ask(scheduler, "batch", { className: "batch", kvNeedTokens: 200 });
  assert.equal(await isSettled(batch), false, "700 + 200 would leave less than 15 % free");
  const standard = ask(scheduler, "standard", { kvNeedTokens: 400 });
  fleet(860, PressureLevel.PRESSURE_LEVEL_WARN);
  const shed = await rejected(batch);
  assert.equal(shed.rejection, "shed_memory");
  assert.ok(shed.retryAfterMs >= 1_000);
  const arriving = ask(scheduler, "arriving", { className: "batch", kvNeedTokens: 1 });
  assert.equal((await rejected(arriving)).rejection, "shed_memory");
  assert.equal(await isSettled(standard), false);
  fleet(100);
  await granted(standard);
  await granted(ask(scheduler, "batch again", { className: "batch", kvNeedTokens: 200 }));
});

test("memory: a request larger than the whole fleet is not held (the worker refuses it precisely)", async () => {
  const { scheduler, fleet } = gated();
  fleet(1_000, PressureLevel.PRESSURE_LEVEL_CRITICAL);
  await granted(ask(scheduler, "huge", { kvNeedTokens: 5_000 }));
});

test("memory fail-safe: with memory-guard gone the last snapshot gates for staleMs, then the concurrency cap alone", async () => {
  const { clock, memory, scheduler, fleet } = gated({ capacity: 2, staleMs: 10_000 });
  fleet(900);
  const held = ask(scheduler, "held", { kvNeedTokens: 500 });
  memory.disconnected();
  clock.advance(9_999);
  assert.equal(await isSettled(held), false, "the last snapshot still holds it back");
  clock.advance(1);
  await granted(held);
  await granted(ask(scheduler, "next", { kvNeedTokens: 500 }));
  const capped = ask(scheduler, "capped", { kvNeedTokens: 1 });
  assert.equal(await isSettled(capped), false, "the concurrency cap still applies");
});

test("while interactive requests keep coming, the headroom stays free for them: a burst of other work cannot make one wait", async () => {
  const { clock, scheduler } = setup({ capacity: 10, interactiveHeadroom: 2 });
  // No interactive traffic yet: standard may fill every slot.
  const early = Array.from({ length: 10 }, (_, index) => ask(scheduler, `early-${index}`));
  const earlySlots = await Promise.all(early.map(granted));
  for (const slot of earlySlots) slot.release();

  await granted(ask(scheduler, "person", { className: "interactive" })).then((slot) => slot.release());
  const burst = Array.from({ length: 10 }, (_, index) => ask(scheduler, `burst-${index}`, { className: index % 2 ? "batch" : "standard" }));
  await new Promise((resolve) => setImmediate(resolve));
  const settled = await Promise.all(burst.map(isSettled));
  assert.equal(settled.filter(Boolean).length, 8, "the other classes stop two short of capacity");
  const person = ask(scheduler, "another person", { className: "interactive" });
  assert.ok(await isSettled(person), "granted at once, not after a release");
  await granted(person);

  // Half a minute without interactive requests: the headroom goes back to everyone.
  clock.advance(30_001);
  const slots = await Promise.all(burst.slice(0, 8).map(granted));
  slots[0]!.release(); // a release lets the queue use the freed headroom
  assert.equal((await Promise.all(burst.map(isSettled))).filter(Boolean).length, 10);
});

test("interactive requests may overdraw the cap by the burst once the headroom is gone; the fleet comes back under it before other work starts", async () => {
  const { scheduler } = setup({ capacity: 10, interactiveHeadroom: 2, interactiveBurst: 2 });
  await granted(ask(scheduler, "first person", { className: "interactive" })).then((slot) => slot.release());
  const others = await Promise.all(Array.from({ length: 8 }, (_, index) => granted(ask(scheduler, `other-${index}`))));
  const people = await Promise.all(
    Array.from({ length: 4 }, (_, index) => granted(ask(scheduler, `person-${index}`, { className: "interactive" }))),
  );
  assert.equal(scheduler.inFlightOf("interactive"), 4, "two in the headroom, two over the cap");
  const waitingPerson = ask(scheduler, "fifth person", { className: "interactive" });
  const waitingOther = ask(scheduler, "waiting other");
  assert.equal(await isSettled(waitingPerson), false, "the burst is bounded");

  others[0]!.release();
  await granted(waitingPerson);
  // 12 in flight: other work waits until fewer than 8 (the cap less the headroom) are.
  for (const slot of [others[1]!, others[2]!, people[0]!, people[1]!]) slot.release();
  assert.equal(await isSettled(waitingOther), false, "other work waits while the fleet is over its cap or in the headroom");
  people[2]!.release();
  await granted(waitingOther);
});

test("an arrival's estimated wait counts the releases that bring the fleet back under its class's limit", async () => {
  const { clock, scheduler } = setup({ capacity: 10, interactiveHeadroom: 2, interactiveBurst: 2 });
  const probe = await granted(ask(scheduler, "probe", { className: "interactive" }));
  clock.advance(1_000); // one hold of 1 s measured: 10 releases a second
  probe.release();
  clock.advance(10_001); // the probe's arrival leaves the 10-s window; its headroom stays for 30 s
  await Promise.all(Array.from({ length: 8 }, (_, index) => granted(ask(scheduler, `other-${index}`))));
  await Promise.all(Array.from({ length: 4 }, (_, index) => granted(ask(scheduler, `person-${index}`, { className: "interactive" }))));
  clock.advance(10_001); // and so do the people's: no urgent arrivals to count
  // 12 in flight, 8 allowed to standard: the 5th release lets it in.
  const waiting = ask(scheduler, "standard");
  assert.deepEqual(waiting.places, [{ position: 0, estimatedWaitMs: 500 }]);
});

test("a waiter that more urgent arrivals push back past its deadline is shed then, not when its timeout fires", async () => {
  const { clock, scheduler } = setup({ capacity: 1 });
  // One measured hold of 1 s: a waiter's estimated wait is (position + 1) seconds.
  const first = await granted(ask(scheduler, "first"));
  clock.advance(1_000);
  first.release();
  const holder = await granted(ask(scheduler, "holder"));
  clock.advance(2_000); // the two standard arrivals out of the last second
  const patient = ask(scheduler, "batch job", { className: "batch", queueTimeoutMs: 10_000 });
  assert.equal(await isSettled(patient), false, "an estimated 1.25 s fits its 10 s");
  for (let index = 0; index < 12; index += 1) ask(scheduler, `person-${index}`, { className: "interactive", tenantId: `p${index}` });
  clock.advance(500); // its next position update
  assert.ok(await isSettled(patient), "shed 0.5 s in, not at its 10 s timeout");
  const outcome = await rejected(patient);
  assert.equal(outcome.rejection, "shed_early");
  assert.ok(outcome.retryAfterMs > 0);
  holder.release();
});

test("a less urgent arrival's wait counts the releases that more urgent arrivals will take first", async () => {
  const { clock, scheduler } = setup({ capacity: 1 });
  const first = await granted(ask(scheduler, "first"));
  clock.advance(1_000); // one release a second
  first.release();
  await granted(ask(scheduler, "holder", { className: "interactive", tenantId: "p" }));
  // Five interactive arrivals in the last 10 s, 1.1 s apart (none in the last second), take half the releases ahead of standard.
  for (let index = 0; index < 4; index += 1) {
    clock.advance(1_100);
    ask(scheduler, `person-${index}`, { className: "interactive", tenantId: `p${index}` });
  }
  clock.advance(1_500);
  // Four waiters ahead: (4 + 1) releases at 0.5 a second for standard is 10 s, not 5 s.
  const hasty = ask(scheduler, "hasty", { queueTimeoutMs: 8_000 });
  assert.equal((await rejected(hasty)).rejection, "shed_early");
  const patient = ask(scheduler, "patient", { queueTimeoutMs: 12_000 });
  assert.equal(await isSettled(patient), false, "10 s fits its 12 s");
});

test("at the start of a surge the last second decides: an arrival the calm 10 s before would let queue is refused at once", async () => {
  const { clock, scheduler } = setup({ capacity: 1 });
  const first = await granted(ask(scheduler, "first"));
  clock.advance(1_000); // one release a second
  first.release();
  await granted(ask(scheduler, "holder"));
  clock.advance(6_000);
  // Three interactive arrivals at once: 0.3 a second over 10 s, but 3 a second over the last second, more than the releases.
  for (let index = 0; index < 3; index += 1) ask(scheduler, `person-${index}`, { className: "interactive", tenantId: `p${index}` });
  const standard = ask(scheduler, "standard", { queueTimeoutMs: 60_000 });
  assert.equal((await rejected(standard)).rejection, "shed_early", "over 10 s it would wait (3 + 1) / 0.7 ≈ 5.7 s and queue");
  // Once the burst is a second old, the long window speaks again.
  clock.advance(1_001);
  const later = ask(scheduler, "later", { queueTimeoutMs: 60_000 });
  assert.equal(await isSettled(later), false);
});

test("batch's cautious estimate believes the releases it sees while full: holds that lengthened under load are not hidden by the old mean", async () => {
  const { clock, scheduler } = setup({ capacity: 2 });
  // Short holds first: a mean of 1 s, so two slots promise two releases a second.
  for (let index = 0; index < 2; index += 1) {
    const slot = await granted(ask(scheduler, `quick-${index}`));
    clock.advance(1_000);
    slot.release();
  }
  // Then the load changes: both slots taken, and in 7 s only one of them frees.
  const slow = [await granted(ask(scheduler, "slow-0")), await granted(ask(scheduler, "slow-1"))];
  const waiting = [ask(scheduler, "w0", { tenantId: "a" }), ask(scheduler, "w1", { tenantId: "b" })];
  clock.advance(7_000);
  slow[0]!.release(); // w0 takes it; the mean hold is 1.6 s now, which promises 8.75 releases in those 7 s
  await granted(waiting[0]!);
  // One release in 7 s of full is 0.14 a second, where the mean promises 1.25: with w1 ahead a newcomer waits about 14 s, not 1.6.
  const newcomer = ask(scheduler, "newcomer", { className: "batch", tenantId: "c", queueTimeoutMs: 6_000 });
  assert.equal(await isSettled(newcomer), true, "refused at arrival (the mean alone would queue it)");
  assert.equal((await rejected(newcomer)).rejection, "shed_early");
  // Standard and interactive are refused only on the plain estimate.
  const standard = ask(scheduler, "standard", { tenantId: "f", queueTimeoutMs: 6_000 });
  assert.equal(await isSettled(standard), false);
  const person = ask(scheduler, "person", { className: "interactive", tenantId: "e", queueTimeoutMs: 6_000 });
  assert.equal(await isSettled(person), false);
});

test("waits are estimated from the holds seen while the fleet was full, not from the quick holds of a calm spell before", async () => {
  const { clock, scheduler } = setup({ capacity: 2 });
  // Full: two slots held 4 s (the second grant of the pair fills the fleet).
  const full = [await granted(ask(scheduler, "full-0")), await granted(ask(scheduler, "full-1"))];
  clock.advance(4_000);
  for (const slot of full) slot.release();
  // Calm: one request at a time, held 0.5 s; the mean over all holds falls to about 1.6 s.
  for (let index = 0; index < 10; index += 1) {
    const slot = await granted(ask(scheduler, `calm-${index}`));
    clock.advance(500);
    slot.release();
  }
  assert.ok(scheduler.meanHoldMs < 2_000, `mean hold ${scheduler.meanHoldMs}`);
  // A surge fills the fleet again. The next request waits for one of two releases of a 4 s hold: about 2 s, where the mean says 0.8 s.
  await granted(ask(scheduler, "surge-0"));
  await granted(ask(scheduler, "surge-1"));
  const hasty = ask(scheduler, "hasty", { queueTimeoutMs: 1_500 });
  assert.equal((await rejected(hasty)).rejection, "shed_early");
  const patient = ask(scheduler, "patient", { queueTimeoutMs: 2_500 });
  assert.equal(await isSettled(patient), false, "2 s fits its 2.5 s");
});

test("a reload's larger cap grants waiters at once; a smaller one drops no slot and no waiter", async () => {
  const { scheduler } = setup({ capacity: 1 });
  const settings = (capacity: number) => ({
    capacity,
    maxQueue: 100,
    maxQueuePerClass: { interactive: 100, standard: 100, batch: 100 },
    queuedUpdateMs: 500,
    interactiveHeadroom: 0,
    interactiveWindowMs: 30_000,
    interactiveBurst: 0,
    admitWithinShare: 1,
  });
  const first = await granted(ask(scheduler, "first"));
  const second = ask(scheduler, "second");
  const third = ask(scheduler, "third");
  scheduler.reconfigure(settings(2), false);
  await granted(second);
  assert.equal(scheduler.capacity, 2);
  scheduler.reconfigure(settings(1), false);
  assert.equal(scheduler.inFlightOf("standard"), 2, "both slots held beyond the smaller cap stay");
  assert.equal(scheduler.queuedOf("standard"), 1, "the waiter keeps its place");
  first.release();
  assert.equal(scheduler.queuedOf("standard"), 1, "still at the cap: nothing new is granted");
  (await granted(second)).release();
  await granted(third);
});
