/**
 * The mesh tried as an attacker on the same network would: every internal port of a
 * live mesh (sim worker), called without a certificate, with a certificate from
 * another CA, and with each mesh identity against every RPC it may not call.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { credentials, status, type ChannelCredentials } from "@grpc/grpc-js";
import { createClient } from "nice-grpc";
import { HealthDefinition } from "nice-grpc-server-health";
import { AdmissionServiceDefinition } from "../../gen/infermesh/admission/v1/admission_service.js";
import { MemoryGuardServiceDefinition } from "../../gen/infermesh/memory/v1/memory_service.js";
import { RouterServiceDefinition } from "../../gen/infermesh/router/v1/router_service.js";
import { WorkerServiceDefinition } from "../../gen/infermesh/worker/v1/worker_service.js";
import { meshRoles, type MeshRole } from "../../services/common/mesh-security/identity.js";
import { admissionRules, memoryGuardRules, routerRules, workerRules } from "../../services/common/mesh-security/rules.js";
import { makeTestPki, meshCredentials, metricSum, startTestMesh, waitFor, type TestMesh } from "../support/harness.js";
import { callRaw, rawMethods } from "../support/raw-grpc.js";

let mesh: TestMesh;
const model = "sim-gpt-oss-20b";

before(async () => {
  mesh = await startTestMesh({ workerArgs: ["--engine", "sim", "--sim-time-scale", "0"] });
});

after(async () => {
  await mesh?.stop();
});

/** Every internal service: its port, its role, its methods and who may call them. */
function internalServices() {
  return [
    {
      role: "admission" as const,
      port: mesh.ports.admission,
      methods: rawMethods(AdmissionServiceDefinition),
      rules: admissionRules as Record<string, readonly MeshRole[]>,
    },
    {
      role: "router" as const,
      port: mesh.ports.router,
      methods: rawMethods(RouterServiceDefinition),
      rules: routerRules as Record<string, readonly MeshRole[]>,
    },
    {
      role: "memory-guard" as const,
      port: mesh.ports.memoryGuard,
      methods: rawMethods(MemoryGuardServiceDefinition),
      rules: memoryGuardRules as Record<string, readonly MeshRole[]>,
    },
    {
      role: "worker" as const,
      port: mesh.ports.workerBase,
      methods: rawMethods(WorkerServiceDefinition),
      rules: workerRules as Record<string, readonly MeshRole[]>,
    },
  ];
}

/** A worker certificate that names the mesh's worker identity but was issued by another CA. */
async function strangerCertificate(): Promise<ChannelCredentials> {
  const worker = join(await makeTestPki(), "worker");
  return credentials.createSsl(
    readFileSync(join(mesh.pkiDir, "ca.crt")),
    readFileSync(join(worker, "tls.key")),
    readFileSync(join(worker, "tls.crt")),
    {
      checkServerIdentity: () => undefined,
    },
  );
}

test("with no client certificate, or one from another CA, every internal port refuses every RPC, health included", async () => {
  const serverAuthOnly = credentials.createSsl(readFileSync(join(mesh.pkiDir, "ca.crt")), null, null, {
    checkServerIdentity: () => undefined,
  });
  const stranger = await strangerCertificate();
  for (const service of internalServices()) {
    const methods = [
      ...Object.values(service.methods),
      { path: "/grpc.health.v1.Health/Check", requestStream: false, responseStream: false },
    ];
    for (const method of methods) {
      for (const [how, channelCredentials] of [
        ["plaintext", credentials.createInsecure()],
        ["TLS without a client certificate", serverAuthOnly],
        ["another CA's worker certificate", stranger],
      ] as const) {
        const { code } = await callRaw(service.port, channelCredentials, method, undefined, { deadlineMs: 5_000 });
        assert.equal(code, status.UNAVAILABLE, `${how} -> ${method.path}: the handshake must fail, got ${status[code]}`);
      }
    }
  }
});

test("each mesh identity is refused, with PERMISSION_DENIED and a metric, every RPC ARCHITECTURE §9 does not give it", async () => {
  let denied = 0;
  for (const service of internalServices()) {
    for (const [key, method] of Object.entries(service.methods)) {
      for (const role of meshRoles) {
        if (service.rules[key]!.includes(role)) continue;
        const { code, details } = await callRaw(service.port, meshCredentials(mesh.pkiDir, service.role, role), method);
        assert.equal(code, status.PERMISSION_DENIED, `${role} -> ${method.path}: got ${status[code]} ${details}`);
        assert.match(details, new RegExp(`the ${role} identity may not call`));
        denied += 1;
      }
    }
  }
  assert.ok(denied > 50, `${denied} refusals tried`);
  const metricsPorts = [mesh.ports.admissionMetrics, mesh.ports.routerMetrics, mesh.ports.memoryGuardMetrics, mesh.ports.workerMetricsBase];
  const counted = (
    await Promise.all(metricsPorts.map((port) => metricSum(`http://127.0.0.1:${port}/metrics`, "infermesh_rpc_denied_total")))
  ).reduce((a, b) => a + b, 0);
  assert.equal(counted, denied);
});

test("a worker's certificate can neither pick, acquire nor generate; a gateway's cannot register a worker", async () => {
  const asWorker = (peer: MeshRole) => meshCredentials(mesh.pkiDir, peer, "worker");
  const pick = await callRaw(mesh.ports.router, asWorker("router"), {
    path: "/infermesh.router.v1.RouterService/Pick",
    requestStream: false,
    responseStream: false,
  });
  assert.equal(pick.code, status.PERMISSION_DENIED);
  const acquire = await callRaw(mesh.ports.admission, asWorker("admission"), {
    path: "/infermesh.admission.v1.AdmissionService/Acquire",
    requestStream: true,
    responseStream: true,
  });
  assert.equal(acquire.code, status.PERMISSION_DENIED);
  const generate = await callRaw(mesh.ports.workerBase, asWorker("worker"), {
    path: "/infermesh.worker.v1.WorkerService/Generate",
    requestStream: false,
    responseStream: true,
  });
  assert.equal(generate.code, status.PERMISSION_DENIED);
  const connect = await callRaw(mesh.ports.router, meshCredentials(mesh.pkiDir, "router", "gateway"), {
    path: "/infermesh.router.v1.RouterService/Connect",
    requestStream: true,
    responseStream: true,
  });
  assert.equal(connect.code, status.PERMISSION_DENIED);
  // The fleet still has exactly the real worker, and it still answers.
  const router = createClient(RouterServiceDefinition, mesh.channel(mesh.ports.router, "router", "gateway"));
  assert.deepEqual(
    (await router.listWorkers({})).workers.map((worker) => worker.registration?.workerId),
    ["worker-0"],
  );
  const response = await fetch(`${mesh.baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }], max_tokens: 4 }),
  });
  assert.equal(response.status, 200);
});

test("a client checks the server's identity: the gateway's certificate reaching the router's port as if it were a worker fails", async () => {
  // What an impostor listening at an address the router hands out would present.
  const getInfo = await callRaw(mesh.ports.router, meshCredentials(mesh.pkiDir, "worker", "gateway"), {
    path: "/infermesh.worker.v1.WorkerService/GetInfo",
    requestStream: false,
    responseStream: false,
  });
  assert.equal(getInfo.code, status.UNAVAILABLE);
});

test("every mesh identity may check health; the kubelet reads readiness over plain HTTP on the metrics port", async () => {
  for (const role of meshRoles) {
    const health = createClient(HealthDefinition, mesh.channel(mesh.ports.router, "router", role));
    assert.equal((await health.check({ service: "" })).status, 1 /* SERVING */);
  }
  for (const port of [mesh.ports.admissionMetrics, mesh.ports.routerMetrics, mesh.ports.memoryGuardMetrics, mesh.ports.workerMetricsBase]) {
    await waitFor(`readyz on ${port}`, async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200);
    assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
  }
});

test("an internal service refuses a request it cannot decode with INVALID_ARGUMENT naming the field, never INTERNAL", async () => {
  const router = createClient(RouterServiceDefinition, mesh.channel(mesh.ports.router, "router", "gateway"));
  await assert.rejects(
    router.pick({ requestId: "r", model, prefixBlockHashes: [1, 2 ** 60] }),
    (error: { code?: number; details?: string }) =>
      error.code === status.INVALID_ARGUMENT &&
      error.details === "prefix_block_hashes[1]: 64-bit integers must be below 2^53 (9007199254740992)",
  );
  const memoryGuard = createClient(MemoryGuardServiceDefinition, mesh.channel(mesh.ports.memoryGuard, "memory-guard", "worker"));
  async function* oneReport() {
    yield { event: { $case: "kvReport" as const, value: { workerId: "forged", device: "gpu", kvUsedTokens: 2 ** 62, kvTotalTokens: 10 } } };
    await new Promise((resolve) => setTimeout(resolve, 5_000));
  }
  await assert.rejects(
    (async () => {
      for await (const _command of memoryGuard.report(oneReport() as never)) {
        // No command is expected before the refusal.
      }
    })(),
    (error: { code?: number; details?: string }) =>
      error.code === status.INVALID_ARGUMENT && /^kv_report\.kv_used_tokens: 64-bit integers must be below 2\^53/.test(error.details ?? ""),
  );
  // Still serving.
  assert.equal((await router.listWorkers({})).workers.length, 1);
});
