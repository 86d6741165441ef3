/** A real admission process: a slot is held exactly while its Acquire stream is open. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createChannel, createClient, Status, type Client } from "nice-grpc";
import { AdmissionServiceDefinition, type AcquireResponse } from "../../gen/infermesh/admission/v1/admission_service.js";
import { PriorityClass } from "../../gen/infermesh/common/v1/common.js";
import { entryPoint, telemetryImport } from "../../services/launcher/mesh.js";
import { Supervisor } from "../../services/launcher/supervisor.js";
import { freePorts, waitFor } from "../support/harness.js";

let supervisor: Supervisor;
let admission: Client<typeof AdmissionServiceDefinition>;
const logs: string[] = [];

before(async () => {
  const [port, metricsPort] = await freePorts(2);
  supervisor = new Supervisor({ nodeArgs: telemetryImport(), onLine: (_child, line) => logs.push(line), onEvent: () => undefined });
  supervisor.start([
    {
      name: "admission",
      script: entryPoint("services/admission/main.js"),
      args: ["--listen", `127.0.0.1:${port}`, "--metrics-port", String(metricsPort), "--max-concurrency", "1", "--max-queue", "1", "--queue-timeout-ms", "60000"],
      env: { OTEL_SDK_DISABLED: "true" },
    },
  ]);
  admission = createClient(AdmissionServiceDefinition, createChannel(`127.0.0.1:${port}`));
  await waitFor("admission to listen", () => admission.getStats({}).then(() => true));
});

after(() => supervisor.stop());

const request = {
  requestId: "r",
  tenantId: "t",
  priorityClass: PriorityClass.PRIORITY_CLASS_STANDARD,
  model: "m",
  estimatedInputTokens: 10,
  maxOutputTokens: 10,
  queueTimeoutMs: undefined,
};

/** Opens an Acquire stream and returns its events as they come, and a way to close it. */
function open() {
  const controller = new AbortController();
  const events: AcquireResponse[] = [];
  const done = (async () => {
    try {
      for await (const event of admission.acquire(request, { signal: controller.signal })) events.push(event);
    } catch {
      // Closed by us.
    }
  })();
  return { events, close: () => controller.abort(), done };
}

test("a slot is held while its stream is open and passes to the next in line when it closes", async () => {
  const first = open();
  await waitFor("the first grant", () => first.events.some((event) => event.event?.$case === "granted"));
  const second = open();
  await waitFor("the second to queue", () => second.events.some((event) => event.event?.$case === "queued"));
  assert.deepEqual((await admission.getStats({})).inFlight, 1);

  // A third finds the queue (of one) full and is told when to retry.
  const third = open();
  await third.done;
  const rejected = third.events.find((event) => event.event?.$case === "rejected")?.event;
  assert.equal(rejected?.$case, "rejected");
  assert.ok(rejected.$case === "rejected" && rejected.value.retryAfterMs > 0);

  first.close();
  await waitFor("the second grant", () => second.events.some((event) => event.event?.$case === "granted"));
  second.close();
  await waitFor("every slot to be free", async () => (await admission.getStats({})).inFlight === 0);
});

test("a queued request that gives up leaves the queue at once", async () => {
  const holder = open();
  await waitFor("the grant", () => holder.events.some((event) => event.event?.$case === "granted"));
  const waiter = open();
  await waitFor("the queue", () => waiter.events.some((event) => event.event?.$case === "queued"));
  waiter.close();
  await waitFor("the queue to empty", async () => (await admission.getStats({})).queued === 0);
  holder.close();
  await waitFor("every slot to be free", async () => (await admission.getStats({})).inFlight === 0);
});

test("an Acquire without a priority class is rejected with INVALID_ARGUMENT", async () => {
  await assert.rejects(
    (async () => {
      for await (const _ of admission.acquire({ ...request, priorityClass: PriorityClass.PRIORITY_CLASS_UNSPECIFIED })) {
        // No event expected.
      }
    })(),
    (error: any) => error.code === Status.INVALID_ARGUMENT,
  );
});
