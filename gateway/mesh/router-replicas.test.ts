import assert from "node:assert/strict";
import test from "node:test";
import { ClientError, Status } from "nice-grpc";
import { PickRequest, PickResponse } from "../../gen/infermesh/router/v1/router_service.js";
import { RouterReplicas } from "./router-replicas.js";
import { ReplicaSet } from "../../services/common/replica-set.js";

/** A stand-in replica (the real ones are tested end to end in router-replicas.test): records its picks, or fails with `failing`. */
function replica(name: string, calls: string[], failing?: Status, workers: { id: string; age: number }[] = []) {
  const fail = () => Promise.reject(new ClientError("/infermesh.router.v1.RouterService/Pick", failing!, `${name} is down`));
  return {
    pick: () => {
      calls.push(name);
      return failing === undefined ? Promise.resolve(PickResponse.create({ reason: name })) : fail();
    },
    listWorkers: () =>
      failing === undefined
        ? Promise.resolve({ workers: workers.map(({ id, age }) => ({ registration: { workerId: id }, reportAgeMs: age, note: name })) })
        : fail(),
  } as never;
}

const pickOf = (sessionId: string, prefixBlockHashes: number[] = []) => PickRequest.create({ model: "m", sessionId, prefixBlockHashes });

test("a session's picks all go to one replica; picks without a session or prefix take turns", async () => {
  const calls: string[] = [];
  const replicas = new RouterReplicas(new ReplicaSet([replica("a", calls), replica("b", calls), replica("c", calls)]));
  for (let turn = 0; turn < 5; turn += 1) await replicas.pick(pickOf("session-42"), {});
  assert.equal(new Set(calls).size, 1, `one replica: ${calls}`);
  calls.length = 0;
  for (let turn = 0; turn < 5; turn += 1) await replicas.pick(pickOf("", [123456789]), {});
  assert.equal(new Set(calls).size, 1, "a prompt's picks too, by its first block");
  calls.length = 0;
  for (let turn = 0; turn < 6; turn += 1) await replicas.pick(pickOf(""), {});
  assert.deepEqual(new Set(calls), new Set(["a", "b", "c"]));
});

test("a pick moves on from a replica that is down or does not know the model yet; a refusal it shares is not retried", async () => {
  const calls: string[] = [];
  const down = new RouterReplicas(
    new ReplicaSet([replica("a", calls, Status.UNAVAILABLE), replica("b", calls, Status.NOT_FOUND), replica("c", calls)]),
  );
  for (let turn = 0; turn < 3; turn += 1) assert.equal((await down.pick(pickOf(""), {})).reason, "c");
  calls.length = 0;
  const refusing = new RouterReplicas(new ReplicaSet([replica("a", calls, Status.INVALID_ARGUMENT), replica("b", calls)]));
  // The first pick without a session or prefix goes to the first replica.
  await assert.rejects(
    refusing.pick(pickOf(""), {}),
    (error: unknown) => error instanceof ClientError && error.code === Status.INVALID_ARGUMENT,
  );
  assert.deepEqual(calls, ["a"], "INVALID_ARGUMENT is not asked of another replica");
});

test("the fleet is every replica's list merged, each worker as its freshest report has it, though one replica is down", async () => {
  const calls: string[] = [];
  const replicas = new RouterReplicas(
    new ReplicaSet([
      replica("a", calls, undefined, [
        { id: "w1", age: 900 },
        { id: "w2", age: 10 },
      ]),
      replica("b", calls, undefined, [{ id: "w1", age: 20 }]),
      replica("c", calls, Status.UNAVAILABLE),
    ]),
  );
  const { workers } = await replicas.listWorkers({});
  const seen = new Map(workers.map((worker) => [worker.registration!.workerId, (worker as unknown as { note: string }).note]));
  assert.deepEqual(Object.fromEntries(seen), { w1: "b", w2: "a" });
});
