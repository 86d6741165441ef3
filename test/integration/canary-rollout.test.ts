/**
 * Canary rollouts on a live mesh: two router replicas sharing a real redis-server, and
 * four sim workers: `sim-gpt-oss-20b` (the baseline), `sim-good` (a canary as good as
 * it), `sim-bad` (a canary whose engine fails 30 % of its generations) and `sim-slow`
 * (one at forty times an H100's time, two thousand times the baseline's). An admin starts a rollout through the gateway and the
 * routers do the rest: the bad and the slow canaries are rolled back in their first
 * window, the good one reaches 100 % even when the router driving it is killed halfway,
 * and no user request fails on the way.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createClient } from "nice-grpc";
import { RouterServiceDefinition } from "../../gen/infermesh/router/v1/router_service.js";
import { metricSum, startTestMesh, type TestMesh, waitFor } from "../support/harness.js";
import { startRedis, type TestRedis } from "../support/redis.js";

const model = "sim-gpt-oss-20b";
let mesh: TestMesh;
let redis: TestRedis;

before(async () => {
  redis = await startRedis();
  mesh = await startTestMesh({
    routers: 2,
    redisUrl: redis.url,
    workers: 4,
    workerArgs: ["--engine", "sim", "--sim-time-scale", "0.02", "--sim-answer-tokens-min", "8", "--sim-answer-tokens-max", "16"],
    workerArgsOf: (index) =>
      [
        [],
        ["--model-id", "sim-good"],
        ["--model-id", "sim-bad", "--sim-failure-ratio", "0.3"],
        ["--model-id", "sim-slow", "--sim-time-scale", "40"],
      ][index]!,
    routerArgs: ["--rollout-tick-ms", "250"],
    admissionArgs: ["--max-concurrency", "64"],
  });
  for (const port of [mesh.ports.router, mesh.ports.extraReplicas.router[0]!.listen]) {
    const router = createClient(RouterServiceDefinition, mesh.channel(port, "router", "gateway"));
    await waitFor("every worker to register with both routers", async () => (await router.listWorkers({})).workers.length === 4);
  }
});

after(async () => {
  await mesh?.stop();
  await redis?.stop();
});

interface RolloutJson {
  state: string;
  canary_percent: number;
  reason: string | null;
  events: { at: string; kind: string; canary_percent: number; detail: string }[];
  last_judgement: { canary: { samples: number; failed: number } } | null;
}

async function getRollout(): Promise<RolloutJson> {
  const response = await fetch(`${mesh.baseUrl}/admin/rollouts/${model}`);
  assert.equal(response.status, 200, await response.clone().text());
  return (await response.json()) as RolloutJson;
}

async function startRollout(body: Record<string, unknown>): Promise<void> {
  const response = await fetch(`${mesh.baseUrl}/admin/rollouts/${model}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  assert.equal(response.status, 200, await response.clone().text());
}

/** Chats from `callers` callers, each a new session, half of them streamed, until `until` resolves. */
async function steadyLoad(callers: number, until: Promise<unknown>) {
  const results: { status: number; model: string; error: string }[] = [];
  let done = false;
  void until.finally(() => {
    done = true;
  });
  let sent = 0;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (!done) {
        sent += 1;
        const stream = sent % 2 === 0;
        const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model, messages: [{ role: "user", content: "Hi" }], max_tokens: 16, stream, user: `user-${sent}` }),
        });
        const text = await response.text();
        const failed = !response.ok || text.includes('"error"');
        const served = /"model":"([^"]+)"/.exec(text)?.[1] ?? "";
        results.push({
          status: failed ? (response.ok ? 599 : response.status) : response.status,
          model: served,
          error: failed ? text.slice(0, 200) : "",
        });
      }
    }),
  );
  return results;
}

const routerMetrics = (replica: number) =>
  `http://127.0.0.1:${replica === 0 ? mesh.ports.routerMetrics : mesh.ports.extraReplicas.router[0]!.metrics}/metrics`;

test("a bad rollout is refused with a 400 naming the field, and an unknown one is a 404", async () => {
  const put = (body: unknown) =>
    fetch(`${mesh.baseUrl}/admin/rollouts/${model}`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  const descending = await put({ baseline: model, canary: "sim-good", step_percents: [50, 10] });
  assert.equal(descending.status, 400);
  assert.match(((await descending.json()) as { error: { message: string } }).error.message, /spec\.step_percents must ascend/);
  const unknown = await put({ baseline: model, canary: "sim-good", steps: [10] });
  assert.equal(unknown.status, 400);
  assert.match(((await unknown.json()) as { error: { message: string } }).error.message, /"steps"/);
  assert.equal((await fetch(`${mesh.baseUrl}/admin/rollouts/no-such-model`)).status, 404);
  assert.equal((await fetch(`${mesh.baseUrl}/admin/rollouts/no-such-model`, { method: "DELETE" })).status, 404);
});

test("a canary that fails 30 % of its generations is rolled back to 0 % in its first window, and no user request fails", async (t) => {
  await startRollout({
    baseline: model,
    canary: "sim-bad",
    // A step could not be promoted before a minute: the rollback is the judge's, on the first window.
    step_hold_ms: 60_000,
    window_ms: 3_000,
    min_samples: 8,
  });
  const rolledBack = waitFor("the rollout to be rolled back", async () => (await getRollout()).state === "rolled_back", 45_000);
  const results = await steadyLoad(6, rolledBack);
  const rollout = await getRollout();
  const at = (kind: string) => Date.parse(rollout.events.find((event) => event.kind === kind)!.at);
  t.diagnostic(`rolled back ${at("rolled_back") - at("started")} ms after it started, ${results.length} requests: ${rollout.reason}`);
  const failed = results.filter((result) => result.status !== 200);
  assert.deepEqual(failed, [], `${failed.length} of ${results.length} requests failed`);
  assert.equal(rollout.canary_percent, 0);
  // Judged on its error rate, or, once the router's health score kept traffic off its
  // failing worker before the window filled, on being passed over.
  assert.match(
    rollout.reason ?? "",
    /^(error rate \d+\.\d\d % > baseline \d+\.\d\d % \+ 1\.00 %|passed over for \d+ of the \d+ picks .* \d+ of its \d+ generations failed\))/,
  );
  assert.deepEqual(
    rollout.events.map((event) => event.kind).filter((kind) => kind !== "resumed"),
    ["started", "rolled_back"],
    "rolled back from its first step, never promoted",
  );
  // The canary really failed, at its worker: its users were retried on the baseline.
  const canaryWorkerMetrics = `http://127.0.0.1:${mesh.ports.workerMetricsBase + 2}/metrics`;
  const workerText = await fetch(canaryWorkerMetrics).then((response) => response.text());
  assert.match(workerText, /^infermesh_worker_generations_total\{[^}]*outcome="rejected"[^}]*\} [1-9]/m);
  // Once rolled back, new sessions go to the baseline only.
  const afterwards = await steadyLoad(2, new Promise((resolve) => setTimeout(resolve, 1_000)));
  assert.ok(
    afterwards.length > 0 && afterwards.every((result) => result.status === 200 && result.model === model),
    JSON.stringify(afterwards.slice(0, 3)),
  );
  assert.equal(
    (await metricSum(routerMetrics(0), "infermesh_router_rollout_transitions_total")) +
      (await metricSum(routerMetrics(1), "infermesh_router_rollout_transitions_total")) >
      0,
    true,
  );
  const response = await fetch(`${mesh.baseUrl}/admin/splits/${model}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ targets: [{ model, weight: 1 }] }),
  });
  assert.equal(response.status, 200, "an ended rollout leaves the split to people again");
});

test("a canary two thousand times slower than its baseline is rolled back on its time to first token, and no user request fails", async (t) => {
  await startRollout({ baseline: model, canary: "sim-slow", step_hold_ms: 60_000, window_ms: 5_000, min_samples: 5 });
  const rolledBack = waitFor("the rollout to be rolled back", async () => (await getRollout()).state === "rolled_back", 45_000).catch(
    async (error) => {
      throw new Error(`${error}: ${JSON.stringify((await getRollout()).last_judgement)}`);
    },
  );
  const results = await steadyLoad(6, rolledBack);
  const rollout = await getRollout();
  t.diagnostic(`${results.length} requests: ${rollout.reason}`);
  assert.deepEqual(
    results.filter((result) => result.status !== 200),
    [],
  );
  assert.deepEqual(
    rollout.events.map((event) => event.kind).filter((kind) => kind !== "resumed"),
    ["started", "rolled_back"],
  );
  // Judged on its latency (or, were its worker full, on being passed over); it failed nothing.
  assert.match(
    rollout.reason ?? "",
    /(TTFT p95 \d+ ms > \d+ ms \(baseline \d+ ms × 1\.5, and at least \+ 50 ms\)|passed over for \d+ of the \d+ picks .* 0 of its \d+ generations failed\))/,
  );
  assert.doesNotMatch(rollout.reason ?? "", /error rate/);
});

test("a good canary moves 10 → 50 → 100 % by itself; one router drives it, and killing that one halfway hands over", async (t) => {
  await startRollout({
    baseline: model,
    canary: "sim-good",
    step_hold_ms: 3_000,
    window_ms: 3_000,
    min_samples: 8,
    // The sim's latencies on a shared two-core machine are noisy; the error rate is what must hold exactly.
    slo: { max_ttft_ratio: 4, max_itl_ratio: 4, latency_slack_ms: 500 },
  });
  // While it runs, a person's split would fight it.
  const refused = await fetch(`${mesh.baseUrl}/admin/splits/${model}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ targets: [{ model, weight: 1 }] }),
  });
  assert.equal(refused.status, 400);
  assert.match(await refused.text(), /a rollout drives the split/);

  const drivers = async () => [
    await metricSum(routerMetrics(0), "infermesh_router_rollout_driver"),
    await metricSum(routerMetrics(1), "infermesh_router_rollout_driver"),
  ];
  const killed: string[] = [];
  const succeeded = waitFor(
    "the rollout to succeed",
    async () => {
      const rollout = await getRollout();
      if (rollout.canary_percent === 50 && killed.length === 0) {
        const driving = await drivers();
        assert.equal(driving[0]! + driving[1]!, 1, `exactly one router drives: ${driving}`);
        const victim = driving[0] === 1 ? "router" : "router-1";
        killed.push(victim);
        process.kill(mesh.supervisor.pid(victim)!, "SIGKILL");
      }
      return rollout.state === "succeeded" || rollout.state === "rolled_back";
    },
    120_000,
  );
  const results = await steadyLoad(6, succeeded);
  const rollout = await getRollout();
  assert.equal(rollout.state, "succeeded", `${rollout.reason}: ${JSON.stringify(rollout.events)}`);
  assert.equal(killed.length, 1, "the driver was killed at 50 %");
  const kinds = rollout.events.map((event) => event.kind);
  t.diagnostic(
    `${results.length} requests; events: ${rollout.events.map((event) => `${event.kind} ${event.canary_percent} %`).join(", ")}`,
  );
  assert.deepEqual(
    kinds.filter((kind) => kind !== "resumed"),
    ["started", "promoted", "promoted", "succeeded"],
  );
  assert.ok(kinds.includes("resumed"), `another router took over: ${kinds}`);
  const failed = results.filter((result) => result.status !== 200);
  assert.deepEqual(failed, [], `${failed.length} of ${results.length} requests failed`);
  // At 100 %, new sessions get the canary.
  const afterwards = await steadyLoad(2, new Promise((resolve) => setTimeout(resolve, 1_000)));
  assert.ok(
    afterwards.length > 0 && afterwards.every((result) => result.status === 200 && result.model === "sim-good"),
    JSON.stringify(afterwards.slice(0, 3)),
  );
});
