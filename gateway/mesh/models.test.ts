import assert from "node:assert/strict";
import { test } from "node:test";
import { ServingState } from "../../gen/infermesh/common/v1/common.js";
import { LoadReport, type WorkerStatus } from "../../gen/infermesh/router/v1/router_service.js";
import type { MeshClients } from "./clients.js";
import { ModelCatalog } from "./models.js";

/** A router that answers ListWorkers from a list the test changes (the only fake here). */
function routerWith(workers: { current: WorkerStatus[] }) {
  let calls = 0;
  const clients = { router: { listWorkers: async () => ((calls += 1), { workers: workers.current }) } } as unknown as MeshClients;
  return { clients, calls: () => calls };
}

const worker = (model: string, state = ServingState.SERVING_STATE_SERVING): WorkerStatus => ({
  registration: {
    workerId: `w-${model}`,
    address: "a:1",
    models: [{ id: model, engine: "llamacpp", contextTokens: 512, description: "" }],
    device: "cpu",
    maxSequences: 1,
    state,
    sendsKvEvents: false,
    tensorParallelSize: 1,
  },
  load: LoadReport.create({ state }),
  reportAgeMs: 0,
  draining: false,
  inFlightPicks: 0,
});

test("lists the models of serving workers only, once each, sorted", async () => {
  const fleet = { current: [worker("b"), worker("a"), worker("a"), worker("c", ServingState.SERVING_STATE_DRAINING)] };
  const catalog = new ModelCatalog(routerWith(fleet).clients, 60_000);
  assert.deepEqual(
    (await catalog.list()).map((model) => model.id),
    ["a", "b"],
  );
});

test("reuses the list within its lifetime but looks again on a miss", async () => {
  const fleet = { current: [worker("a")] };
  const router = routerWith(fleet);
  const catalog = new ModelCatalog(router.clients, 60_000);
  assert.ok(await catalog.find("a"));
  assert.ok(await catalog.find("a"));
  assert.equal(router.calls(), 1);
  fleet.current = [worker("a"), worker("new")];
  assert.ok(await catalog.find("new"), "a model that just appeared is found at once");
});

test("remembers models served before, so their absence reads as temporary", async () => {
  const fleet = { current: [worker("a")] };
  const catalog = new ModelCatalog(routerWith(fleet).clients, 0);
  await catalog.list();
  fleet.current = [];
  assert.equal(await catalog.find("a"), undefined);
  assert.equal(catalog.servedBefore("a"), true);
  assert.equal(catalog.servedBefore("never"), false);
});
