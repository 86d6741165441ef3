/**
 * The service's own bookkeeping, driven directly: its generator can be closed at any
 * yield (as the gRPC server does when a call ends), which no client can time on purpose.
 */
import { pushable } from "it-pushable";
import assert from "node:assert/strict";
import test from "node:test";
import type { CallContext } from "nice-grpc";
import { Registry } from "prom-client";
import { AcquireRequest, type AcquireResponse } from "../../gen/infermesh/admission/v1/admission_service.js";
import { PriorityClass } from "../../gen/infermesh/common/v1/common.js";
import { ManualClock } from "../common/clock.js";
import { createLogger } from "../common/logger.js";
import { createAdmissionService } from "./admission-service.js";
import { AdmissionStats } from "./admission-stats.js";
import { MemoryGate } from "./memory-gate.js";
import { Scheduler } from "./scheduler.js";
import { TenantLimiter } from "./tenant-limits.js";

function setup() {
  const clock = new ManualClock();
  const logger = createLogger("admission-test", "silent");
  const memory = new MemoryGate(clock, { staleMs: 10_000, batchHeadroomRatio: 0.15 }, logger);
  const scheduler = new Scheduler({
    capacity: 1,
    maxQueue: 10,
    maxQueuePerClass: { interactive: 10, standard: 10, batch: 10 },
    queuedUpdateMs: 500,
    clock,
    memory,
  });
  const tenants = new TenantLimiter(clock);
  const decisions: { event: string; fields: Readonly<Record<string, unknown>> }[] = [];
  const service = createAdmissionService({
    scheduler,
    tenants,
    stats: new AdmissionStats(scheduler, memory, new Registry()),
    defaultQueueTimeoutMs: () => 60_000,
    logger,
    events: (event, fields) => decisions.push({ event, fields }),
  });
  /** Starts one Acquire call; its generator is driven by hand. */
  const call = (limits?: AcquireRequest["tenantLimits"]) => {
    const requests = pushable<AcquireRequest>({ objectMode: true });
    requests.push(
      AcquireRequest.create({
        requestId: "r",
        tenantId: "t",
        priorityClass: PriorityClass.PRIORITY_CLASS_STANDARD,
        model: "m",
        estimatedInputTokens: 10,
        tenantLimits: limits,
      }),
    );
    const context = { signal: new AbortController().signal } as CallContext;
    const events = (service.acquire(requests, context) as AsyncGenerator<AcquireResponse>)[Symbol.asyncIterator]();
    return { events, requests };
  };
  return { scheduler, tenants, call, decisions };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

test("a call closed while it waits, at its Queued event, leaves the queue and gives back its tenant's charge", async () => {
  const { scheduler, tenants, call } = setup();
  const holder = call();
  assert.equal((await holder.events.next()).value?.event?.$case, "granted");
  const waiter = call();
  assert.equal((await waiter.events.next()).value?.event?.$case, "queued");
  assert.equal(tenants.inFlight("t"), 2);
  await waiter.events.return(undefined);
  assert.equal(scheduler.queuedOf("standard"), 0);
  assert.equal(tenants.inFlight("t"), 1);
  holder.requests.end();
  await holder.events.next();
  assert.equal(scheduler.inFlightOf("standard"), 0);
});

test("a call closed at its Queued event just as its grant arrives does not keep the slot", async () => {
  const { scheduler, call } = setup();
  const holder = call();
  await holder.events.next();
  const waiter = call();
  assert.equal((await waiter.events.next()).value?.event?.$case, "queued");
  holder.requests.end(); // the holder releases: the waiter is granted...
  await holder.events.next();
  assert.equal(scheduler.inFlightOf("standard"), 1);
  await waiter.events.return(undefined); // ...while its call is being closed
  await settle();
  assert.equal(scheduler.inFlightOf("standard"), 0, "the slot granted to a closed call is released");
  const next = call();
  assert.equal((await next.events.next()).value?.event?.$case, "granted", "capacity is free again");
});

test("each decision is an event: queued with its place, granted with its wait, rejected with its reason", async () => {
  const { call, decisions } = setup();
  const holder = call();
  await holder.events.next();
  const waiter = call();
  await waiter.events.next();
  const counted = call({ requestsPerMinute: 1 });
  await counted.events.next();
  const limited = call({ requestsPerMinute: 1 });
  assert.equal((await limited.events.next()).value?.event?.$case, "rejected");
  assert.deepEqual(
    decisions.map(({ event, fields }) => [event, fields.reason ?? fields.position ?? fields.queued_ms]),
    [
      ["admission.granted", 0],
      ["admission.queued", 0],
      ["admission.queued", 1],
      ["admission.rejected", "rate_limited"],
    ],
  );
  assert.equal(decisions[3]!.fields.limit, "requests_per_minute");
  assert.equal(decisions[3]!.fields.tenant, "t");
  await waiter.events.return(undefined);
  await counted.events.return(undefined);
});
