/**
 * A canary on a live mesh: worker-0 serves sim-gpt-oss-20b, worker-1 a new version of
 * it. An admin splits the model's traffic through the gateway; sessions keep their
 * version, the ramp to 100 % moves everyone, and the router meters what each got.
 */
import test, { after, before } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "nice-grpc";
import { RouterServiceDefinition } from "../../gen/infermesh/router/v1/router_service.js";
import { metricValue, startTestMesh, waitFor, type TestMesh } from "../support/harness.js";

const stable = "sim-gpt-oss-20b";
const canary = "sim-gpt-oss-20b-v2";
let mesh: TestMesh;

before(async () => {
  mesh = await startTestMesh({
    workers: 2,
    workerArgs: ["--engine", "sim", "--sim-time-scale", "0"],
    workerArgsOf: (index) => (index === 1 ? ["--model-id", canary] : []),
  });
  const router = createClient(RouterServiceDefinition, mesh.channel(mesh.ports.router, "router", "gateway"));
  await waitFor("both workers to register", async () => (await router.listWorkers({})).workers.length === 2);
});

after(async () => {
  await mesh?.stop();
});

async function setSplit(targets: { model: string; weight: number }[]): Promise<Response> {
  return fetch(`${mesh.baseUrl}/admin/splits/${stable}`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ targets }),
  });
}

/** The model version that answered a chat of `user`. */
async function servedModel(user: string): Promise<string> {
  const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: stable, messages: [{ role: "user", content: `hello from ${user}` }], max_tokens: 2, user }),
  });
  assert.equal(response.status, 200);
  return ((await response.json()) as { model: string }).model;
}

test("a 50 % split sends about half the sessions to the canary, each session sticks, and the router meters it", async () => {
  const set = await setSplit([
    { model: stable, weight: 50 },
    { model: canary, weight: 50 },
  ]);
  assert.equal(set.status, 200, await set.clone().text());
  const served = await Promise.all(Array.from({ length: 40 }, (_, index) => servedModel(`user-${index}`)));
  const onCanary = served.filter((model) => model === canary).length;
  assert.ok(onCanary >= 8 && onCanary <= 32, `${onCanary} of 40 sessions on the canary`);
  for (let index = 0; index < 5; index += 1) {
    assert.equal(await servedModel(`user-${index}`), served[index], `user-${index} keeps its version`);
  }
  const metrics = `http://127.0.0.1:${mesh.ports.routerMetrics}/metrics`;
  const metered = await metricValue(metrics, `infermesh_router_split_picks_total{model="${stable}",target="${canary}"`);
  assert.ok(metered !== undefined && metered >= onCanary, `metered ${metered}`);
});

test("ramping to 100 % moves every session to the canary; deleting the split brings them back", async () => {
  assert.equal(
    (
      await setSplit([
        { model: stable, weight: 0 },
        { model: canary, weight: 100 },
      ])
    ).status,
    200,
  );
  for (let index = 0; index < 10; index += 1) assert.equal(await servedModel(`user-${index}`), canary);
  const listed = (await (await fetch(`${mesh.baseUrl}/admin/splits`)).json()) as { data: { model: string; targets: unknown[] }[] };
  assert.deepEqual(listed.data, [
    {
      model: stable,
      object: "traffic_split",
      targets: [
        { model: stable, weight: 0 },
        { model: canary, weight: 100 },
      ],
    },
  ]);
  assert.equal((await fetch(`${mesh.baseUrl}/admin/splits/${stable}`, { method: "DELETE" })).status, 200);
  for (let index = 0; index < 10; index += 1) assert.equal(await servedModel(`user-${index}`), stable);
});

test("a bad split is refused with a 400 that says why", async () => {
  const repeated = await setSplit([
    { model: canary, weight: 1 },
    { model: canary, weight: 2 },
  ]);
  assert.equal(repeated.status, 400);
  assert.match(((await repeated.json()) as { error: { message: string } }).error.message, /twice/);
  const negative = await setSplit([{ model: canary, weight: -1 }]);
  assert.equal(negative.status, 400);
});
