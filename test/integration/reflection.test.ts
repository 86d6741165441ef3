/**
 * Server reflection read by a second, independent protobuf implementation (Debian's
 * python3-grpcio and python3-protobuf, the C++ runtime grpcurl's Go runtime agrees
 * with): on every port of a live mesh, list the services, load every descriptor into a
 * fresh pool (where an invalid one, such as a map entry misnamed, fails), and call one
 * method by reflection alone.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, test } from "node:test";
import { repoRoot } from "../../services/common/paths.js";
import { startTestMesh, type TestMesh } from "../support/harness.js";

/** Debian's interpreter, where python3-grpcio installs (not a pyenv python on PATH). */
const python = "/usr/bin/python3";
let mesh: TestMesh;

before(async () => {
  mesh = await startTestMesh({ workerArgs: ["--engine", "sim", "--sim-time-scale", "0"] });
});

after(async () => {
  await mesh?.stop();
});

interface Checked {
  services: string[];
  methods: Record<string, string[]>;
  call: { ok: boolean; response?: any; code?: string; details?: string };
}

async function check(port: number, method: string, asOperator: boolean): Promise<Checked> {
  const operator = join(mesh.pkiDir, "operator");
  const tls = asOperator ? [join(operator, "ca.crt"), join(operator, "tls.crt"), join(operator, "tls.key")] : ["-", "-", "-"];
  const { stdout } = await promisify(execFile)(
    python,
    [join(repoRoot(), "test/support/reflection_check.py"), `127.0.0.1:${port}`, ...tls, method],
    { timeout: 30_000 },
  );
  return JSON.parse(stdout) as Checked;
}

test("grpcio lists, describes and calls every port by reflection alone; internal ports with the operator's certificate", async (context) => {
  const probe = await promisify(execFile)(python, ["-c", "import grpc, google.protobuf"]).then(
    () => true,
    () => false,
  );
  if (!existsSync(python) || !probe) return context.skip("python3-grpcio is not installed (.ci/run installs it)");
  const ports = [
    {
      port: mesh.ports.gatewayGrpc,
      service: "infermesh.gateway.v1.ChatService",
      method: "/infermesh.gateway.v1.ModelService/ListModels",
      asOperator: false,
    },
    {
      port: mesh.ports.admission,
      service: "infermesh.admission.v1.AdmissionService",
      method: "/infermesh.admission.v1.AdmissionService/GetStats",
      asOperator: true,
    },
    {
      port: mesh.ports.router,
      service: "infermesh.router.v1.RouterService",
      method: "/infermesh.router.v1.RouterService/ListWorkers",
      asOperator: true,
    },
    {
      port: mesh.ports.memoryGuard,
      service: "infermesh.memory.v1.MemoryGuardService",
      method: "/grpc.health.v1.Health/Check",
      asOperator: true,
    },
    {
      port: mesh.ports.workerBase,
      service: "infermesh.worker.v1.WorkerService",
      method: "/infermesh.worker.v1.WorkerService/GetInfo",
      asOperator: true,
    },
  ];
  for (const { port, service, method, asOperator } of ports) {
    const checked = await check(port, method, asOperator);
    assert.ok(checked.services.includes(service) && checked.services.includes("grpc.health.v1.Health"), `${service}: ${checked.services}`);
    assert.ok(checked.methods[service]!.length > 0);
    assert.ok(checked.call.ok, `${method}: ${checked.call.code} ${checked.call.details}`);
  }
  // What was called answered with real content, decoded from reflection's types alone.
  const workers = await check(mesh.ports.router, "/infermesh.router.v1.RouterService/ListWorkers", true);
  assert.equal(workers.call.response.workers[0].registration.workerId, "worker-0");
  const models = await check(mesh.ports.gatewayGrpc, "/infermesh.gateway.v1.ModelService/ListModels", false);
  assert.ok(JSON.stringify(models.call.response).includes("sim-gpt-oss-20b"));
  // The operator may describe what it may not call.
  const pick = await check(mesh.ports.router, "/infermesh.router.v1.RouterService/Pick", true);
  assert.equal(pick.call.code, "PERMISSION_DENIED");
});
