/**
 * Memory-aware admission over real processes: memory-guard fed by a stand-in worker's
 * Report stream, admission watching it. A request whose KV does not fit is held until
 * the fleet has room; with memory-guard gone, the last snapshot holds for
 * pressureStaleMs and then admission falls back to its concurrency cap.
 */
import { pushable } from "it-pushable";
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { join } from "node:path";
import { createClient, type Client } from "nice-grpc";
import { AdmissionServiceDefinition, type AcquireResponse } from "../../gen/infermesh/admission/v1/admission_service.js";
import { PriorityClass } from "../../gen/infermesh/common/v1/common.js";
import { MemoryGuardServiceDefinition, type ReportRequest } from "../../gen/infermesh/memory/v1/memory_service.js";
import { entryPoint, telemetryImport } from "../../services/launcher/mesh.js";
import { Supervisor } from "../../services/launcher/supervisor.js";
import { freePorts, makeTestPki, meshChannel, metricValue, waitFor } from "../support/harness.js";

const pressureStaleMs = 1_500;
const fleetTokens = 1_000;
let memorySupervisor: Supervisor;
let admissionSupervisor: Supervisor;
let admission: Client<typeof AdmissionServiceDefinition>;
let metricsUrl: string;
const reports = pushable<ReportRequest>({ objectMode: true });
const logs: string[] = [];

before(async () => {
  const [admissionPort, admissionMetricsPort, memoryGuardPort, memoryGuardMetricsPort] = await freePorts(4);
  const pkiDir = await makeTestPki();
  metricsUrl = `http://127.0.0.1:${admissionMetricsPort}/metrics`;
  const supervisor = () =>
    new Supervisor({
      nodeArgs: telemetryImport(),
      onLine: (child, line) => logs.push(`[${child}] ${line}`),
      onEvent: () => undefined,
      stopGraceMs: 5_000,
    });
  memorySupervisor = supervisor();
  memorySupervisor.start([
    {
      name: "memory-guard",
      script: entryPoint("services/memory-guard/main.js"),
      args: [
        "--listen",
        `127.0.0.1:${memoryGuardPort}`,
        "--metrics-port",
        String(memoryGuardMetricsPort),
        "--tls-dir",
        join(pkiDir, "memory-guard"),
      ],
      env: { OTEL_SDK_DISABLED: "true" },
    },
  ]);
  admissionSupervisor = supervisor();
  admissionSupervisor.start([
    {
      name: "admission",
      script: entryPoint("services/admission/main.js"),
      args: [
        "--listen",
        `127.0.0.1:${admissionPort}`,
        "--metrics-port",
        String(admissionMetricsPort),
        "--memory-guard-address",
        `127.0.0.1:${memoryGuardPort}`,
        "--pressure-stale-ms",
        String(pressureStaleMs),
        "--max-concurrency",
        "4",
        "--tls-dir",
        join(pkiDir, "admission"),
      ],
      env: { OTEL_SDK_DISABLED: "true" },
    },
  ]);
  admission = createClient(AdmissionServiceDefinition, meshChannel(pkiDir, admissionPort!, "admission", "gateway"));
  // The test reports KV usage as a worker would, and probes with a watch as the router would.
  const memoryGuard = createClient(MemoryGuardServiceDefinition, meshChannel(pkiDir, memoryGuardPort!, "memory-guard", "worker"));
  const watcher = createClient(MemoryGuardServiceDefinition, meshChannel(pkiDir, memoryGuardPort!, "memory-guard", "router"));
  await waitFor("memory-guard to listen", async () => {
    const probe = new AbortController();
    try {
      await watcher.watch({}, { signal: probe.signal })[Symbol.asyncIterator]().next();
      return true;
    } finally {
      probe.abort();
    }
  });
  // A stand-in worker: one device of 1,000 KV cells whose usage the tests set.
  void (async () => {
    for await (const _command of memoryGuard.report(reports)) {
      // Eviction requests are of no interest here.
    }
  })().catch(() => undefined);
  await reportUsed(0);
});

after(async () => {
  reports.end();
  await admissionSupervisor.stop();
  await memorySupervisor.stop();
});

/** Sets the stand-in worker's KV usage and, unless told not to, waits until admission has seen it. */
async function reportUsed(usedTokens: number, wait = true): Promise<void> {
  reports.push({
    event: {
      $case: "kvReport",
      value: {
        workerId: "w0",
        device: "cuda:0",
        kvUsedTokens: usedTokens,
        kvTotalTokens: fleetTokens,
        idleSequences: 0,
        kvReservedTokens: 0,
        idleSessions: [],
        residentSessions: 0,
      },
    },
  });
  if (!wait) return;
  await waitFor(`admission to see ${usedTokens} KV cells in use`, async () => {
    const { memoryGate } = await admission.getStats({});
    return memoryGate?.active && memoryGate.fleetTotalTokens === fleetTokens && memoryGate.fleetFreeTokens === fleetTokens - usedTokens;
  });
}

/** Opens an Acquire stream for a request that can grow to `kvNeedTokens`. */
function acquire(kvNeedTokens: number) {
  const outgoing = pushable<object>({ objectMode: true });
  outgoing.push({
    requestId: "r",
    tenantId: "t",
    priorityClass: PriorityClass.PRIORITY_CLASS_STANDARD,
    model: "m",
    estimatedInputTokens: kvNeedTokens / 2,
    maxTokens: kvNeedTokens / 2,
    choices: 1,
  });
  const events: AcquireResponse[] = [];
  const done = (async () => {
    for await (const event of admission.acquire(outgoing as never)) events.push(event);
  })().catch(() => undefined);
  const has = (kind: "queued" | "granted") => events.some((event) => event.event?.$case === kind);
  return { events, done, queued: () => has("queued"), granted: () => has("granted"), release: () => outgoing.end() };
}

test("a request whose KV does not fit the fleet's free KV waits, though slots are free, and is granted once the fleet has room", async () => {
  await reportUsed(700);
  const request = acquire(400);
  await waitFor("the request to queue", request.queued);
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(request.granted(), false, "held while 300 cells are free");
  assert.equal((await admission.getStats({})).inFlight, 0);
  await reportUsed(500, false);
  await waitFor("the grant", request.granted);
  request.release();
  await request.done;
  await waitFor("the slot to be free", async () => (await admission.getStats({})).inFlight === 0);
});

test("with memory-guard stopped, admission keeps its last snapshot for pressureStaleMs, then falls back to the concurrency cap", async () => {
  await reportUsed(900);
  const request = acquire(400);
  await waitFor("the request to queue", request.queued);
  assert.equal(await metricValue(metricsUrl, "infermesh_admission_memory_gate_active"), 1);

  const stoppedAt = performance.now();
  await memorySupervisor.stop();
  await new Promise((resolve) => setTimeout(resolve, pressureStaleMs / 3));
  assert.equal(request.granted(), false, "the last snapshot still holds it back");
  assert.equal(await metricValue(metricsUrl, "infermesh_admission_memory_gate_active"), 1);

  await waitFor("the fallback grant", request.granted, 10_000);
  const waitedMs = performance.now() - stoppedAt;
  assert.ok(waitedMs >= pressureStaleMs - 50, `granted ${Math.round(waitedMs)} ms after memory-guard stopped`);
  assert.equal(await metricValue(metricsUrl, "infermesh_admission_memory_gate_active"), 0);
  const stats = await admission.getStats({});
  assert.equal(stats.memoryGate?.active, false);
  assert.equal(logs.filter((line) => line.includes("admitting by the concurrency cap alone")).length, 1, "one warning");

  // The concurrency cap (4) still gates.
  const more = [acquire(400), acquire(400), acquire(400), acquire(400)];
  await waitFor(
    "three more grants and one waiter",
    () => more.filter((entry) => entry.granted()).length === 3 && more.some((entry) => entry.queued()),
  );
  for (const entry of [request, ...more]) entry.release();
  await Promise.all([request, ...more].map((entry) => entry.done));
  await waitFor("every slot to be free", async () => (await admission.getStats({})).inFlight === 0);
});
