import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { metricSum, startTestMesh, type TestMesh, waitFor } from "../support/harness.js";
import { startRedis, type TestRedis } from "../support/redis.js";

// Two replicas of each control-plane service, active-active, sharing admission's limits
// through a real redis-server: every worker keeps a Connect stream to each router and
// a Report stream to each memory-guard; the gateway spreads picks and acquires over
// the replicas and moves one to the other replica when the first does not answer.
// Killing any one replica under steady load must fail no request, and a tenant's
// limit must hold for both admissions together, not for each.
const workers = 2;
const limitedKey = "sk-limited-0000000000000001";
const openKey = "sk-open-00000000000000000001";
let mesh: TestMesh;
/** The bodies of failed requests, for the assertion's message. */
const failures: string[] = [];
let redis: TestRedis;

before(async () => {
  redis = await startRedis();
  const config = join(mkdtempSync(join(tmpdir(), "infermesh-replicas-")), "gateway.json");
  writeFileSync(
    config,
    JSON.stringify({
      auth: "required",
      apiKeys: [
        { name: "open", key: openKey, tenant: "open" },
        { name: "limited", key: limitedKey, tenant: "limited", limits: { requestsPerMinute: 30 } },
      ],
    }),
  );
  mesh = await startTestMesh({
    routers: 2,
    admissions: 2,
    memoryGuards: 2,
    redisUrl: redis.url,
    workers,
    // A short lease, so a killed admission's slots come back within the test.
    admissionArgs: ["--max-concurrency", "64", "--lease-ttl-ms", "1500"],
    workerArgs: ["--engine", "sim", "--sim-time-scale", "0.05", "--sim-answer-tokens-min", "20", "--sim-answer-tokens-max", "20"],
    gatewayArgs: ["--config", config],
  });
});

after(async () => {
  await mesh?.stop();
  await redis?.stop();
});

const routerMetrics = (replica: number) => `http://127.0.0.1:${mesh.routerMetricsPorts[replica]}/metrics`;
const admissionMetrics = (replica: number) => `http://127.0.0.1:${mesh.admissionMetricsPorts[replica]}/metrics`;
const memoryGuardMetrics = (replica: number) => `http://127.0.0.1:${mesh.memoryGuardMetricsPorts[replica]}/metrics`;

/** The workers a memory-guard replica has a KV report from (one series each). */
async function reportingWorkers(replica: number): Promise<number> {
  const text = await fetch(memoryGuardMetrics(replica)).then((response) => response.text());
  return text.split("\n").filter((line) => line.startsWith("infermesh_memory_kv_total_tokens{")).length;
}

async function streamedChat(key = openKey): Promise<number> {
  const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ model: "sim-gpt-oss-20b", messages: [{ role: "user", content: "Hi" }], max_tokens: 20, stream: true }),
  });
  const text = await response.text();
  if (!response.ok || text.includes('"error"')) failures.push(text.slice(0, 300));
  // A stream that ended in an error event failed too, whatever its status.
  return response.ok && !text.includes('"error"') ? response.status : response.ok ? 599 : response.status;
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

test("every replica serves: both routers list every worker and pick, both admissions grant", async () => {
  await waitFor("both router replicas to list every worker", async () => {
    const fleets = await Promise.all([0, 1].map((replica) => metricSum(routerMetrics(replica), "infermesh_router_workers")));
    return fleets.every((size) => size === workers);
  });
  await waitFor("both admissions to share the cap", async () => {
    const replicas = await Promise.all([0, 1].map((replica) => metricSum(admissionMetrics(replica), "infermesh_admission_replicas")));
    return replicas.every((count) => count === 2);
  });
  // The shared mode's own metric (the InfermeshRedisUnreachable alert's): Redis answers every process that uses it.
  for (const url of [admissionMetrics(0), admissionMetrics(1), routerMetrics(0), `${mesh.baseUrl}/metrics`]) {
    await waitFor(`${url} to reach Redis`, async () => (await metricSum(url, "infermesh_redis_up")) === 1);
  }
  for (let index = 0; index < 8; index += 1) assert.equal(await streamedChat(), 200);
  for (const replica of [0, 1]) {
    assert.ok((await metricSum(routerMetrics(replica), "infermesh_router_picks_total")) > 0, `router replica ${replica} picked`);
    const granted = await metricSum(admissionMetrics(replica), "infermesh_admission_outcomes_total");
    assert.ok(granted > 0, `admission replica ${replica} decided requests`);
  }
});

test("a tenant's requests per minute hold across both admission replicas", async () => {
  // 30 a minute, the minute's allowance full at first: 30 pass (31 if one refilled meanwhile),
  // where two replicas each enforcing the limit alone would pass 60.
  const statuses = await Promise.all(Array.from({ length: 60 }, () => streamedChat(limitedKey)));
  const passed = statuses.filter((status) => status === 200).length;
  const limited = statuses.filter((status) => status === 429).length;
  assert.equal(passed + limited, 60, `every request passed or was rate limited: ${statuses.join(",")}`);
  assert.ok(passed >= 30 && passed <= 31, `${passed} of 60 passed against a limit of 30 a minute`);
});

test("kill -9 of any control-plane replica under steady load fails no request", async () => {
  const replicaOf = (victim: string) => (victim.endsWith("-1") ? 1 : 0);
  // Back means serving again: every worker registered with a restarted router or
  // reporting to a restarted memory-guard, and a restarted admission (its counters start
  // from zero) has decided requests, so the gateway's channel to it has reconnected.
  // Killing the other replica before then would be a double fault (which the gateway
  // rides out by waiting, not by failing, but the load would then mostly wait).
  const back: Record<string, (victim: string) => Promise<unknown>> = {
    // Every worker registered again (a pick counter would count the picks it refused meanwhile).
    router: (victim) =>
      waitFor(
        `${victim} to list every worker again`,
        async () => (await metricSum(routerMetrics(replicaOf(victim)), "infermesh_router_workers").catch(() => 0)) === workers,
        20_000,
      ),
    admission: (victim) =>
      waitFor(
        `${victim} to admit again`,
        async () => (await metricSum(admissionMetrics(replicaOf(victim)), "infermesh_admission_outcomes_total").catch(() => 0)) > 0,
        20_000,
      ),
    "memory-guard": (victim) =>
      waitFor(
        `${victim} to hear from every worker again`,
        async () => (await reportingWorkers(replicaOf(victim)).catch(() => 0)) === workers,
        20_000,
      ),
  };
  for (const victim of ["router", "router-1", "admission", "admission-1", "memory-guard", "memory-guard-1"]) {
    const service = victim.replace(/-1$/, "");
    const served = await steadyLoad(
      4,
      (async () => {
        // Some traffic before, the kill, then traffic while it is down and after it is back.
        const pickedBefore = await metricSum(routerMetrics(0), "infermesh_router_picks_total");
        await waitFor("some traffic first", async () => (await metricSum(routerMetrics(0), "infermesh_router_picks_total")) > pickedBefore);
        const before = mesh.supervisor.pid(victim)!;
        process.kill(before, "SIGKILL");
        await waitFor(
          `${victim} to be restarted`,
          () => mesh.supervisor.pid(victim) !== before && mesh.supervisor.pid(victim) !== undefined,
        );
        await back[service]!(victim);
      })(),
    );
    const failed = served.filter((status) => status !== 200);
    assert.ok(served.length >= 20, `${served.length} requests while ${victim} was killed and came back`);
    assert.deepEqual(
      failed,
      [],
      `${failed.length} of ${served.length} failed when ${victim} was killed: ${failures.slice(-3).join(" | ")}\n${mesh.logs
        .filter((line) => line.startsWith("[gateway]") && /UNAVAILABLE|error/i.test(line))
        .slice(-5)
        .join("\n")}`,
    );
  }
  // Nothing stuck: once the dead replicas' leases ran out, the two replicas lease the whole cap again.
  await waitFor(
    "the whole cap leased again",
    async () => {
      const leases = await Promise.all([0, 1].map((replica) => metricSum(admissionMetrics(replica), "infermesh_admission_lease_slots")));
      return leases[0]! + leases[1]! === 64;
    },
    10_000,
  );
});
