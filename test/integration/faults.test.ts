/**
 * Faults on a live mesh of three sim workers: a worker killed mid-request, a router
 * killed, a worker drained for a rolling restart. What a user would notice: a clean
 * error or a finished answer, never a hang; nothing left reserved; the fleet back in
 * seconds.
 */
import test, { after, before } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "nice-grpc";
import { RouterServiceDefinition } from "../../gen/infermesh/router/v1/router_service.js";
import { metricSum, metricValue, startTestMesh, waitFor, type TestMesh } from "../support/harness.js";

const workers = 3;
let mesh: TestMesh;
const router = () => createClient(RouterServiceDefinition, mesh.channel(mesh.ports.router, "router", "gateway"));

before(async () => {
  // A long answer takes about 1.5 s: 2,000 tokens (max_tokens cuts it) at a quarter of an H100's 2.9 ms each.
  mesh = await startTestMesh({
    workers,
    workerArgs: ["--engine", "sim", "--sim-time-scale", "0.25", "--sim-answer-tokens-min", "4000", "--sim-answer-tokens-max", "4000"],
  });
  await waitFor("all workers to register", async () => (await router().listWorkers({})).workers.length === workers);
});

after(async () => {
  await mesh?.stop();
});

/** Opens a long streamed chat and resolves once its first chunk arrived; `rest` is the remaining body. */
async function startLongStream(content: string): Promise<{ rest: Promise<string> }> {
  const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "sim-gpt-oss-20b", messages: [{ role: "user", content }], stream: true, max_tokens: 2_000 }),
  });
  if (response.status !== 200) assert.fail(`HTTP ${response.status}: ${await response.text()}`);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  const first = await reader.read();
  const rest = (async () => {
    let body = decoder.decode(first.value);
    for (;;) {
      const next = await reader.read();
      if (next.done) return body;
      body += decoder.decode(next.value, { stream: true });
    }
  })();
  return { rest };
}

/** The worker running a request now, as the router sees it. */
async function busyWorker(): Promise<string> {
  return waitFor("a worker to report the running request", async () => {
    const { workers: listed } = await router().listWorkers({});
    return listed.find((worker) => (worker.load?.runningRequests ?? 0) > 0)?.registration?.workerId;
  });
}

async function shortChat(): Promise<number> {
  const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "sim-gpt-oss-20b",
      messages: [{ role: "user", content: `a short one ${Math.random()}` }],
      max_tokens: 2,
    }),
  });
  await response.arrayBuffer();
  return response.status;
}

/** Successful generations per worker id. */
async function finishedPerWorker(): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (let index = 0; index < workers; index += 1) {
    const url = `http://127.0.0.1:${mesh.ports.workerMetricsBase + index}/metrics`;
    counts.set(
      `worker-${index}`,
      (await metricValue(url, 'infermesh_worker_generations_total{outcome="finished"').catch(() => undefined)) ?? 0,
    );
  }
  return counts;
}

test("a worker killed mid-answer: the stream ends with an error, its reservations and slot are freed, and the router drops it at once", async () => {
  const routerMetrics = `http://127.0.0.1:${mesh.ports.routerMetrics}/metrics`;
  const memoryMetrics = `http://127.0.0.1:${mesh.ports.memoryGuardMetrics}/metrics`;
  const admissionMetrics = `http://127.0.0.1:${mesh.ports.admissionMetrics}/metrics`;
  const { rest } = await startLongStream("tell me a long story");
  const victim = await busyWorker();
  await waitFor("memory-guard to hold its reservation", async () =>
    (await fetch(memoryMetrics).then((r) => r.text())).includes(`worker_id="${victim}"`),
  );
  process.kill(mesh.supervisor.pid(victim)!, "SIGKILL");

  const body = await rest;
  assert.match(body, /"error"/, "the stream ends with an error event, not a hang or a silent cut");
  // The supervisor restarts the worker after 100 ms and it takes longer than that to boot:
  // in that window the router and memory-guard must have dropped it.
  await waitFor(
    "the router to drop the worker",
    async () => !(await router().listWorkers({})).workers.some((worker) => worker.registration?.workerId === victim),
    2_000,
  );
  await waitFor(
    "memory-guard to drop its KV",
    async () => !(await fetch(memoryMetrics).then((r) => r.text())).includes(`worker_id="${victim}"`),
    2_000,
  );
  await waitFor("the admission slot to be free", async () => (await metricSum(admissionMetrics, "infermesh_admission_in_flight")) === 0);
  for (let index = 0; index < 6; index += 1) assert.equal(await shortChat(), 200, "new requests go to the other workers");
  assert.ok((await metricSum(routerMetrics, "infermesh_router_workers")) >= workers - 1);
  await waitFor("the worker to come back", async () => (await router().listWorkers({})).workers.length === workers, 20_000);
});

test("a killed router has every worker back in its fleet within a few seconds", async () => {
  process.kill(mesh.supervisor.pid("router")!, "SIGKILL");
  const killedAt = performance.now();
  await waitFor(
    "the new router to list every worker",
    async () =>
      (
        await router()
          .listWorkers({})
          .catch(() => ({ workers: [] }))
      ).workers.length === workers,
    15_000,
  );
  const backAfterMs = performance.now() - killedAt;
  assert.ok(backAfterMs < 6_000, `the fleet was back after ${backAfterMs.toFixed(0)} ms`);
  assert.equal(await shortChat(), 200);
});

test("a drained worker finishes its answer and takes no new work", async () => {
  const { rest } = await startLongStream("another long story, please");
  const drained = await busyWorker();
  const drain = await fetch(`${mesh.baseUrl}/admin/workers/${drained}/drain`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ reason: "rolling restart" }),
  });
  assert.equal(drain.status, 200);
  const status = (await drain.json()) as { id: string; draining: boolean; running_requests: number };
  assert.equal(status.id, drained);
  assert.equal(status.draining, true);

  const before = await finishedPerWorker();
  // Were the drain ignored, all 12 would miss it by chance only (2/3)^12 < 1 % of the time.
  for (let index = 0; index < 12; index += 1) assert.equal(await shortChat(), 200);
  const after = await finishedPerWorker();
  assert.equal(after.get(drained)! - before.get(drained)!, 0, "nothing new reached the drained worker");
  assert.equal(
    [...after.values()].reduce((sum, count) => sum + count, 0) - [...before.values()].reduce((sum, count) => sum + count, 0),
    12,
    "the others served all 12",
  );

  const body = await rest;
  assert.doesNotMatch(body, /"error"/);
  assert.match(body, /"finish_reason":"length"/, "the running answer finished");
  const listed = (await (await fetch(`${mesh.baseUrl}/admin/workers`)).json()) as {
    data: { id: string; state: string; draining: boolean }[];
  };
  assert.deepEqual(
    listed.data.find((worker) => worker.id === drained),
    { ...listed.data.find((worker) => worker.id === drained), state: "draining", draining: true },
  );

  const unknown = await fetch(`${mesh.baseUrl}/admin/workers/nobody/drain`, { method: "POST" });
  assert.equal(unknown.status, 404);
  assert.match(((await unknown.json()) as { error: { message: string } }).error.message, /nobody/);
});
