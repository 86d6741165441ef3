import assert from "node:assert/strict";
import { test } from "node:test";
import { defaultPorts, listeningPorts, meshChildren, meshPorts } from "./mesh.js";

test("a port offset moves every port of the mesh, internal and metrics ones included", () => {
  assert.deepEqual(meshPorts({ offset: 0, workers: 1 }), defaultPorts);
  const moved = meshPorts({ offset: 100, workers: 2 });
  assert.deepEqual(moved, {
    gatewayHttp: 8100,
    gatewayGrpc: 50150,
    admission: 50151,
    router: 50152,
    memoryGuard: 50153,
    workerBase: 50160,
    admissionMetrics: 9201,
    routerMetrics: 9202,
    memoryGuardMetrics: 9203,
    workerMetricsBase: 9210,
    extraReplicas: { router: [], admission: [], memoryGuard: [] },
  });
  const first = new Set(listeningPorts(meshPorts({ offset: 0, workers: 2 }), 2).map(([, port]) => port));
  assert.ok(
    listeningPorts(moved, 2).every(([, port]) => !first.has(port)),
    "a mesh at offset 100 shares no port with one at the defaults",
  );
});

test("the gateway's ports given by hand win over the offset", () => {
  const ports = meshPorts({ offset: 300, gatewayHttp: 8080, gatewayGrpc: 9090, workers: 1 });
  assert.equal(ports.gatewayHttp, 8080);
  assert.equal(ports.gatewayGrpc, 9090);
  assert.equal(ports.router, 50352);
});

test("ports past 65535 or shared by two processes are refused, naming both", () => {
  assert.throws(
    () => meshPorts({ offset: 15_476, workers: 1 }),
    /^Error: worker-0 would listen on port 65536, past 65535: choose a smaller --port-offset$/,
  );
  assert.throws(
    () => meshPorts({ offset: 0, gatewayHttp: 9102, workers: 1 }),
    /the gateway's HTTP API and the router's metrics would both listen on port 9102/,
  );
  assert.throws(
    () => meshPorts({ offset: 0, gatewayGrpc: 50061, workers: 2 }),
    /the gateway's gRPC API and worker-1 would both listen on port 50061/,
  );
  assert.doesNotThrow(() => meshPorts({ offset: 15_412, workers: 64 }), "the last worker of 64 at 65535 fits");
  assert.throws(() => meshPorts({ offset: 15_413, workers: 64 }), /worker-63 would listen on port 65536/);
});

test("every process of the mesh is told its ports, and the workers their engine flags", () => {
  const ports = meshPorts({ offset: 300, workers: 2 });
  const children = meshChildren({ ports, host: "127.0.0.1", workers: 2, workerArgs: ["--engine", "sim"], security: "insecure" });
  const argsOf = (name: string) => children.find((child) => child.name === name)?.args.join(" ") ?? "";
  assert.match(
    argsOf("gateway"),
    /--port 8300 --grpc-listen 127.0.0.1:50350 --admission-address 127.0.0.1:50351 --router-address 127.0.0.1:50352/,
  );
  assert.match(
    argsOf("worker-1"),
    /--listen 127.0.0.1:50361 --metrics-port 9411 --router-address 127.0.0.1:50352 --memory-guard-address 127.0.0.1:50353/,
  );
  assert.match(argsOf("worker-1"), /--engine sim$/);
  assert.match(argsOf("memory-guard"), /--listen 127.0.0.1:50353 --metrics-port 9403/);
});

test("control-plane replicas: each listens 1,000 ports above the last, and every client is told every one", () => {
  const ports = meshPorts({ offset: 300, workers: 1, replicas: { router: 2, admission: 2, memoryGuard: 2 } });
  assert.deepEqual(ports.extraReplicas.router, [{ listen: 51352, metrics: 10402 }]);
  assert.deepEqual(ports.extraReplicas.admission, [{ listen: 51351, metrics: 10401 }]);
  assert.deepEqual(ports.extraReplicas.memoryGuard, [{ listen: 51353, metrics: 10403 }]);
  assert.ok(listeningPorts(ports, 1).some(([what, port]) => what === "router-1" && port === 51352));
  assert.ok(listeningPorts(ports, 1).some(([what, port]) => what === "memory-guard-1's metrics" && port === 10403));
  const children = meshChildren({
    ports,
    host: "127.0.0.1",
    workers: 1,
    workerArgs: [],
    security: "insecure",
    redisUrl: "redis://127.0.0.1:6379",
  });
  const argsOf = (name: string) => children.find((child) => child.name === name)?.args.join(" ") ?? "";
  assert.match(argsOf("router-1"), /--listen 127.0.0.1:51352 --metrics-port 10402/);
  assert.match(argsOf("admission-1"), /--listen 127.0.0.1:51351 --metrics-port 10401 .*--redis-url redis:\/\/127.0.0.1:6379/);
  for (const name of ["gateway", "worker-0"]) assert.match(argsOf(name), /--router-address 127.0.0.1:50352,127.0.0.1:51352 /);
  for (const name of ["gateway", "worker-0", "router", "admission-1"]) {
    assert.match(argsOf(name), /--memory-guard-address 127.0.0.1:50353,127.0.0.1:51353 /);
  }
  assert.match(argsOf("gateway"), /--admission-address 127.0.0.1:50351,127.0.0.1:51351 /);
});

test("routers without Redis keep their rollouts in the state directory, a file per router; with Redis they keep them there", () => {
  const ports = meshPorts({ offset: 0, workers: 1, replicas: { router: 2, admission: 1, memoryGuard: 1 } });
  const layout = { ports, host: "127.0.0.1", workers: 1, workerArgs: [], security: "insecure" as const, stateDir: "/state" };
  const argsOf = (children: ReturnType<typeof meshChildren>, name: string) => children.find((child) => child.name === name)!.args.join(" ");
  const local = meshChildren(layout);
  assert.match(argsOf(local, "router"), /--rollout-state-file \/state\/router-50052-rollouts.json/);
  assert.match(argsOf(local, "router-1"), /--rollout-state-file \/state\/router-51052-rollouts.json/);
  const shared = meshChildren({ ...layout, redisUrl: "redis://127.0.0.1:6379" });
  assert.doesNotMatch(argsOf(shared, "router"), /--rollout-state-file/);
});
