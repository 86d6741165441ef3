import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import { Registry } from "prom-client";
import { systemClock } from "../../common/clock.js";
import { redisForTests } from "../../../test/support/redis.js";
import { waitFor } from "../../../test/support/harness.js";
import { Scheduler, type Slot, type SlotOutcome } from "../scheduler.js";
import { startSharedAdmission, type SharedAdmission } from "./shared-admission.js";
import type { LimitExceeded, TenantCharge } from "../tenant-limits.js";

// Real Redis (Debian's redis-server): what is shared must hold in the server that shares it.
const redis = redisForTests();

const quiet = pino({ level: "silent" });

/** One admission replica: its scheduler and its shared mode, on the test's Redis. */
function replica(capacity: number, ttlMs = 3_000) {
  let shared: SharedAdmission | undefined;
  const scheduler = new Scheduler({
    capacity,
    maxQueue: 1_000,
    maxQueuePerClass: { interactive: 1_000, standard: 1_000, batch: 1_000 },
    queuedUpdateMs: 1_000_000,
    clock: systemClock,
    onShort: () => shared?.lease.refreshSoon(),
  });
  const registry = new Registry();
  shared = startSharedAdmission({ redisUrl: redis().url, capacity, leaseRefreshMs: 50, leaseTtlMs: ttlMs }, scheduler, quiet, registry);
  return { scheduler, shared, registry };
}

const never = new AbortController().signal;
const ask = (scheduler: Scheduler, className: "interactive" | "standard" | "batch" = "standard") =>
  scheduler.request({ tenantId: "t", className, kvNeedTokens: 0, queueTimeoutMs: 60_000 }, never, () => undefined);
const granted = (outcome: SlotOutcome): Slot => {
  assert.equal(outcome.kind, "granted");
  return (outcome as { slot: Slot }).slot;
};

test("two replicas never hold more slots than the fleet's cap, and the cap follows the demand", async () => {
  await flush();
  const a = replica(10);
  const b = replica(10);
  try {
    await waitFor("both replicas to see each other", () => a.shared.lease.replicas === 2 && b.shared.lease.replicas === 2);
    let inUseMax = 0;
    const watch = setInterval(() => {
      inUseMax = Math.max(inUseMax, a.scheduler.demand().inUse + b.scheduler.demand().inUse);
    }, 1);
    // 14 at A first (10 run), then 6 at B: B gets slots only as A's are released.
    const held: Slot[] = [];
    const take = (outcome: Promise<SlotOutcome>) => outcome.then((result) => held.push(granted(result)));
    const all = Array.from({ length: 14 }, () => take(ask(a.scheduler)));
    await waitFor("A to run 10", () => a.scheduler.demand().inUse === 10, 5_000);
    all.push(...Array.from({ length: 6 }, () => take(ask(b.scheduler))));
    const done = Promise.all(all);
    let finished = false;
    void done.then(() => {
      finished = true;
    });
    while (!finished) {
      held.shift()?.release();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    clearInterval(watch);
    for (const slot of held) slot.release();
    assert.ok(inUseMax <= 10, `slots in use across replicas peaked at ${inUseMax}, over the cap of 10`);
    assert.equal(inUseMax, 10, "the cap is used whole");
  } finally {
    await a.shared.close();
    await b.shared.close();
  }
});

test("a replica's demand takes the cap from an idle one within a few lease reports", async () => {
  await flush();
  const a = replica(8);
  const b = replica(8);
  try {
    await waitFor("both replicas to see each other", () => a.shared.lease.replicas === 2 && b.shared.lease.replicas === 2);
    // Idle: the cap is split evenly.
    await waitFor("an even split", () => a.scheduler.capacity === 4 && b.scheduler.capacity === 4);
    const outcomes = Array.from({ length: 8 }, () => ask(a.scheduler, "batch"));
    const slots = await Promise.all(outcomes.map(async (outcome) => granted(await outcome)));
    assert.equal(slots.length, 8, "A runs the whole cap once B gives its idle share back");
    assert.equal(b.scheduler.capacity, 0);
    // Interactive demand at B comes first: B's lease grows as A releases.
    const interactive = ask(b.scheduler, "interactive");
    for (const slot of slots.splice(0, 2)) slot.release();
    granted(await interactive).release();
    for (const slot of slots) slot.release();
  } finally {
    await a.shared.close();
    await b.shared.close();
  }
});

test("tenant limits hold across replicas: requests per minute and concurrency, refunds given back", async () => {
  await flush();
  const a = replica(100);
  const b = replica(100);
  try {
    await waitFor("both replicas to see each other", () => a.shared.lease.replicas === 2 && b.shared.lease.replicas === 2);
    const limits = { requestsPerMinute: 30 };
    let admitted = 0;
    const charges: TenantCharge[] = [];
    for (let index = 0; index < 60; index += 1) {
      const limiter = index % 2 === 0 ? a.shared.tenants : b.shared.tenants;
      const outcome = await limiter.admit("acme", limits, 10);
      if (isCharge(outcome)) {
        admitted += 1;
        charges.push(outcome);
      } else assert.equal(outcome.limit, "requests_per_minute");
    }
    // 30 a minute, a full minute's worth at first: 30, plus what refilled during the loop (at most 1).
    assert.ok(admitted >= 30 && admitted <= 31, `admitted ${admitted} of 60 against 30 a minute`);
    // A refund (the request never ran) gives its request back.
    charges.pop()!.refund();
    assert.ok(isCharge(await b.shared.tenants.admit("acme", limits, 10)));

    const concurrency = { maxConcurrency: 3 };
    const held: TenantCharge[] = [];
    for (let index = 0; index < 6; index += 1) {
      const outcome = await (index % 2 === 0 ? a : b).shared.tenants.admit("globex", concurrency, 1);
      if (isCharge(outcome)) held.push(outcome);
      else assert.equal(outcome.limit, "max_concurrency");
    }
    assert.equal(held.length, 3, "three at once across both replicas");
    held.pop()!.release();
    await waitFor("a released slot to count", async () => isCharge(await a.shared.tenants.admit("globex", concurrency, 1)));
  } finally {
    await a.shared.close();
    await b.shared.close();
  }
});

test("without Redis a replica keeps its share of each limit locally, says so, and shares again when Redis returns", async () => {
  await flush();
  const a = replica(10);
  const b = replica(10);
  try {
    await waitFor("both replicas to see each other", () => a.shared.lease.replicas === 2 && b.shared.lease.replicas === 2);
    await redis().kill();
    await waitFor("A to notice", async () => (await a.registry.getSingleMetricAsString("infermesh_redis_up")).endsWith(" 0"));
    // Half the cap, and half of each tenant limit: never no limits.
    await waitFor("the local share", () => a.scheduler.capacity === 5, 5_000);
    let admitted = 0;
    for (let index = 0; index < 20; index += 1) {
      if (isCharge(await a.shared.tenants.admit("initech", { requestsPerMinute: 10 }, 1))) admitted += 1;
    }
    assert.equal(admitted, 5);
    await redis().restart();
    await waitFor("A to share again", async () => (await a.registry.getSingleMetricAsString("infermesh_redis_up")).endsWith(" 1"), 10_000);
    await waitFor("the lease back", () => a.shared.lease.replicas === 2, 10_000);
  } finally {
    await a.shared.close();
    await b.shared.close();
  }
});

const isCharge = (outcome: LimitExceeded | TenantCharge): outcome is TenantCharge => "release" in outcome;

/** Each test starts from an empty Redis. */
async function flush(): Promise<void> {
  const { Redis } = await import("ioredis");
  const client = new Redis(redis().url);
  await client.flushall();
  client.disconnect();
}
