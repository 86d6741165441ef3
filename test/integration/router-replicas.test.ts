import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { metricSum, startTestMesh, type TestMesh, waitFor } from "../support/harness.js";

// Two router replicas, active-active: every worker keeps a Connect stream to each, and
// the gateway spreads picks over them and moves a pick to the other replica when one
// does not answer. Killing either one under steady load must fail no request.
const workers = 2;
let mesh: TestMesh;

before(async () => {
  mesh = await startTestMesh({
    routers: 2,
    workers,
    admissionArgs: ["--max-concurrency", "64"],
    workerArgs: ["--engine", "sim", "--sim-time-scale", "0.05", "--sim-answer-tokens-min", "20", "--sim-answer-tokens-max", "20"],
  });
});

after(() => mesh?.stop());

const routerMetrics = (replica: number) => `http://127.0.0.1:${mesh.routerMetricsPorts[replica]}/metrics`;

async function streamedChat(): Promise<number> {
  const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "sim-gpt-oss-20b", messages: [{ role: "user", content: "Hi" }], max_tokens: 20, stream: true }),
  });
  const text = await response.text();
  // A stream that ended in an error event failed too, whatever its status.
  return response.ok && !text.includes('"error"') ? response.status : 599;
}

/** Sends chats from `clients` callers until `until` resolves; returns every status. */
async function steadyLoad(clients: number, until: Promise<unknown>): Promise<number[]> {
  const statuses: number[] = [];
  let done = false;
  void until.finally(() => {
    done = true;
  });
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (!done) statuses.push(await streamedChat());
    }),
  );
  return statuses;
}

test("every worker is in every replica's fleet, and picks are spread over both", async () => {
  await waitFor("both replicas to list every worker", async () => {
    const fleets = await Promise.all([0, 1].map((replica) => metricSum(routerMetrics(replica), "infermesh_router_workers")));
    return fleets.every((size) => size === workers);
  });
  for (let index = 0; index < 8; index += 1) assert.equal(await streamedChat(), 200);
  for (const replica of [0, 1]) {
    assert.ok((await metricSum(routerMetrics(replica), "infermesh_router_picks_total")) > 0, `replica ${replica} picked`);
  }
});

test("kill -9 of either router replica under steady load fails no request", async () => {
  for (const victim of ["router", "router-1"]) {
    const served = await steadyLoad(
      4,
      (async () => {
        // Some traffic before, the kill, then traffic while it is down and after it is back.
        await waitFor("some traffic first", async () => (await metricSum(routerMetrics(0), "infermesh_router_picks_total")) > 0);
        const before = mesh.supervisor.pid(victim)!;
        process.kill(before, "SIGKILL");
        await waitFor(
          `${victim} to be restarted`,
          () => mesh.supervisor.pid(victim) !== before && mesh.supervisor.pid(victim) !== undefined,
        );
        const replica = victim === "router" ? 0 : 1;
        await waitFor(
          `${victim} to list every worker again`,
          async () => (await metricSum(routerMetrics(replica), "infermesh_router_workers").catch(() => 0)) === workers,
          20_000,
        );
      })(),
    );
    const failed = served.filter((status) => status !== 200);
    assert.ok(served.length >= 20, `${served.length} requests while ${victim} was killed and came back`);
    assert.deepEqual(failed, [], `${failed.length} of ${served.length} failed when ${victim} was killed`);
  }
});
