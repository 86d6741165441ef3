/** A real admission process: a slot is held exactly while its Acquire stream is open. */
import { pushable } from "it-pushable";
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { join } from "node:path";
import { createClient, Status, type Client } from "nice-grpc";
import {
  AdmissionServiceDefinition,
  RejectReason,
  type AcquireRequest,
  type AcquireResponse,
  type DeepPartial,
} from "../../gen/infermesh/admission/v1/admission_service.js";
import { PriorityClass } from "../../gen/infermesh/common/v1/common.js";
import { entryPoint, telemetryImport } from "../../services/launcher/mesh.js";
import { Supervisor } from "../../services/launcher/supervisor.js";
import { freePorts, makeTestPki, meshChannel, metricValue, waitFor } from "../support/harness.js";

let supervisor: Supervisor;
let admission: Client<typeof AdmissionServiceDefinition>;
let metricsUrl: string;
const logs: string[] = [];

before(async () => {
  const [port, metricsPort] = await freePorts(2);
  const pkiDir = await makeTestPki();
  metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
  supervisor = new Supervisor({ nodeArgs: telemetryImport(), onLine: (_child, line) => logs.push(line), onEvent: () => undefined });
  supervisor.start([
    {
      name: "admission",
      script: entryPoint("services/admission/main.js"),
      args: [
        "--listen",
        `127.0.0.1:${port}`,
        "--metrics-port",
        String(metricsPort),
        "--max-concurrency",
        "1",
        "--max-queue",
        "1",
        "--queue-timeout-ms",
        "60000",
        "--tls-dir",
        join(pkiDir, "admission"),
      ],
      env: { OTEL_SDK_DISABLED: "true" },
    },
  ]);
  admission = createClient(AdmissionServiceDefinition, meshChannel(pkiDir, port!, "admission", "gateway"));
  await waitFor("admission to listen", () => admission.getStats({}).then(() => true));
});

after(() => supervisor.stop());

const request = {
  requestId: "r",
  tenantId: "t",
  priorityClass: PriorityClass.PRIORITY_CLASS_STANDARD,
  model: "m",
  estimatedInputTokens: 10,
  maxTokens: 10,
  choices: 1,
  queueTimeoutMs: undefined as number | undefined,
};

/**
 * Opens an Acquire stream and returns its events as they come, a way to release the
 * slot (closing our side, as the gateway does) and a way to cancel the call.
 */
function open(requests: readonly DeepPartial<AcquireRequest>[] = [request]) {
  const controller = new AbortController();
  const outgoing = pushable<DeepPartial<AcquireRequest>>({ objectMode: true });
  for (const sent of requests) outgoing.push(sent);
  const events: AcquireResponse[] = [];
  let failure: unknown;
  const done = (async () => {
    try {
      for await (const event of admission.acquire(outgoing, { signal: controller.signal })) events.push(event);
    } catch (error) {
      failure = error;
    }
  })();
  return {
    events,
    send: (message: DeepPartial<AcquireRequest>) => outgoing.push(message),
    close: () => outgoing.end(),
    cancel: () => controller.abort(),
    done,
    failure: () => failure,
  };
}

test("a slot is held while its stream is open and passes to the next in line when it closes", async () => {
  const first = open();
  await waitFor("the first grant", () => first.events.some((event) => event.event?.$case === "granted"));
  const second = open();
  await waitFor("the second to queue", () => second.events.some((event) => event.event?.$case === "queued"));
  const stats = await admission.getStats({});
  assert.equal(stats.inFlight, 1);
  const standard = stats.classes.find((entry) => entry.priorityClass === PriorityClass.PRIORITY_CLASS_STANDARD);
  assert.deepEqual([standard?.inFlight, standard?.queued], [1, 1], "counted in its class");
  assert.equal(await metricValue(metricsUrl, 'infermesh_admission_queued{priority_class="standard"'), 1);

  // A third finds the queue (of one) full and is told when to retry.
  const third = open();
  await third.done;
  const rejected = third.events.find((event) => event.event?.$case === "rejected")?.event;
  assert.equal(rejected?.$case, "rejected");
  assert.ok(rejected.$case === "rejected" && rejected.value.retryAfterMs > 0);
  assert.equal(rejected.value.reason, RejectReason.REJECT_REASON_QUEUE_FULL);

  first.close();
  await first.done;
  assert.equal(first.failure(), undefined, "a released stream ends OK");
  await waitFor("the second grant", () => second.events.some((event) => event.event?.$case === "granted"));
  second.cancel();
  await waitFor("a cancelled call to free its slot too", async () => (await admission.getStats({})).inFlight === 0);
});

test("a queued request that gives up, by closing its side or cancelling the call, leaves the queue at once", async () => {
  const holder = open();
  await waitFor("the grant", () => holder.events.some((event) => event.event?.$case === "granted"));
  for (const giveUp of ["close", "cancel"] as const) {
    const waiter = open();
    await waitFor("the queue", () => waiter.events.some((event) => event.event?.$case === "queued"));
    assert.equal((await admission.getStats({})).queued, 1);
    waiter[giveUp]();
    await waitFor(`the queue to empty (${giveUp})`, async () => (await admission.getStats({})).queued === 0);
    assert.ok(!waiter.events.some((event) => event.event?.$case === "granted"));
  }
  holder.close();
  await waitFor("every slot to be free", async () => (await admission.getStats({})).inFlight === 0);
});

test("a request that could not be granted within its queue timeout is refused at once with OVERLOADED, not queued", async () => {
  // Hold the slot for a measurable time, so admission knows how long slots are held.
  const measured = open();
  await waitFor("the grant", () => measured.events.some((event) => event.event?.$case === "granted"));
  await new Promise((resolve) => setTimeout(resolve, 300));
  measured.close();
  await measured.done;
  const { meanHoldMs } = await admission.getStats({});
  assert.ok(meanHoldMs > 2, `a hold time was measured (${meanHoldMs} ms)`);

  const holder = open();
  await waitFor("the grant", () => holder.events.some((event) => event.event?.$case === "granted"));
  const hopeless = open([{ ...request, queueTimeoutMs: Math.floor(meanHoldMs / 2) }]);
  await hopeless.done;
  assert.deepEqual(
    hopeless.events.map((event) => event.event?.$case),
    ["rejected"],
    "no Queued event first",
  );
  const rejected = hopeless.events[0]!.event;
  assert.ok(rejected?.$case === "rejected");
  assert.equal(rejected.value.reason, RejectReason.REJECT_REASON_OVERLOADED);
  assert.ok(rejected.value.retryAfterMs > 0);
  // The decision took admission no time: its rejection histogram has it within 5 ms of arrival.
  const early = (le: string) =>
    metricValue(
      metricsUrl,
      `infermesh_admission_rejection_seconds_bucket{le="${le}",service="admission",priority_class="standard",outcome="shed_early"}`,
    );
  assert.equal(await early("0.005"), 1);
  assert.equal(await early("+Inf"), 1);
  holder.close();
  await waitFor("every slot to be free", async () => (await admission.getStats({})).inFlight === 0);
});

test("output reported while the slot is held is charged to the tenant: past its tokens per minute, its next request waits for the debt", async () => {
  const metered = { ...request, tenantId: "metered", tenantLimits: { tokensPerMinute: 100 } };
  const first = open([metered]);
  await waitFor("the grant", () => first.events.some((event) => event.event?.$case === "granted"));
  first.send({ outputTokens: 50 });
  first.send({ outputTokens: 150 }); // cumulative: 150 in all, 60 past the minute's 100 with the 10 of input
  first.send({ outputTokens: 150 }); // a repeat charges nothing
  first.close();
  await first.done;
  assert.equal(first.failure(), undefined, "usage reports are not a second request");

  const next = open([metered]);
  await next.done;
  const rejected = next.events[0]?.event;
  assert.ok(rejected?.$case === "rejected", JSON.stringify(next.events));
  assert.equal(rejected.value.reason, RejectReason.REJECT_REASON_RATE_LIMITED);
  assert.match(rejected.value.message, /tokens per minute/);
  // (60 debt + 10 input) at 100 a minute, less the refill of the few milliseconds since.
  assert.ok(rejected.value.retryAfterMs > 41_000 && rejected.value.retryAfterMs <= 42_000, String(rejected.value.retryAfterMs));
  const other = open([{ ...metered, tenantId: "other" }]);
  await waitFor("another tenant's grant", () => other.events.some((event) => event.event?.$case === "granted"));
  other.close();
  await waitFor("every slot to be free", async () => (await admission.getStats({})).inFlight === 0);
});

test("an Acquire without a priority class, without a request or with two is refused with INVALID_ARGUMENT", async () => {
  const noPriority = open([{ ...request, priorityClass: PriorityClass.PRIORITY_CLASS_UNSPECIFIED }]);
  await noPriority.done;
  assert.equal((noPriority.failure() as any)?.code, Status.INVALID_ARGUMENT);

  const empty = open([]);
  empty.close();
  await empty.done;
  assert.equal((empty.failure() as any)?.code, Status.INVALID_ARGUMENT);

  const twice = open([request, request]);
  await twice.done;
  assert.equal((twice.failure() as any)?.code, Status.INVALID_ARGUMENT);
  assert.match((twice.failure() as any)?.details, /one AcquireRequest per stream/);

  // A later message that carries anything but output_tokens is a second request too.
  const disguised = open([request, { outputTokens: 5, model: "m" }]);
  await disguised.done;
  assert.equal((disguised.failure() as any)?.code, Status.INVALID_ARGUMENT);
  await waitFor("the slot it got to be free", async () => (await admission.getStats({})).inFlight === 0);
});
