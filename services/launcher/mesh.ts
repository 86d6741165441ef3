import { join } from "node:path";
import type { MeshRole } from "../common/mesh-security/identity.js";
import { repoRoot } from "../common/paths.js";
import type { ChildSpec } from "./supervisor.js";

/** The ports of one local mesh; the defaults are ARCHITECTURE.md's. */
export interface MeshPorts {
  readonly gatewayHttp: number;
  readonly gatewayGrpc: number;
  readonly admission: number;
  readonly router: number;
  readonly memoryGuard: number;
  /** Worker i listens on workerBase + i. */
  readonly workerBase: number;
  readonly admissionMetrics: number;
  readonly routerMetrics: number;
  readonly memoryGuardMetrics: number;
  /** Worker i serves metrics on workerMetricsBase + i. */
  readonly workerMetricsBase: number;
  /**
   * Router replicas beyond the first (which listens on `router`), each with its gRPC
   * and metrics port. Workers register with every replica; the gateway spreads picks
   * over them.
   */
  readonly extraRouters: readonly { readonly listen: number; readonly metrics: number }[];
}

export const defaultPorts: MeshPorts = Object.freeze({
  gatewayHttp: 8000,
  gatewayGrpc: 50050,
  admission: 50051,
  router: 50052,
  memoryGuard: 50053,
  workerBase: 50060,
  admissionMetrics: 9101,
  routerMetrics: 9102,
  memoryGuardMetrics: 9103,
  workerMetricsBase: 9110,
  extraRouters: [],
});

/** Router replica k (from 1) listens k times this above the first replica's ports: clear of the small offsets meshes run side by side at. */
const routerReplicaStride = 1_000;

/** How a mesh's ports differ from the defaults. */
export interface PortPlan {
  /** Added to every default port, internal and metrics ones included, so meshes run side by side. */
  readonly offset: number;
  /** The gateway's HTTP port, where given; else the default plus the offset. */
  readonly gatewayHttp?: number;
  /** The gateway's public gRPC port, where given; else the default plus the offset. */
  readonly gatewayGrpc?: number;
  /** Workers, each with its own gRPC and metrics port. */
  readonly workers: number;
  /** Router replicas (1 unless given); replica k listens 1,000 × k above the first's ports. */
  readonly routerReplicas?: number;
}

/** The ports of a mesh laid out by `plan`; throws when one would pass 65535 or two processes would share one. */
export function meshPorts(plan: PortPlan): MeshPorts {
  const moved = Object.fromEntries(
    Object.entries(defaultPorts).map(([name, port]) => [name, typeof port === "number" ? port + plan.offset : port]),
  ) as unknown as MeshPorts;
  const ports: MeshPorts = Object.freeze({
    ...moved,
    gatewayHttp: plan.gatewayHttp ?? moved.gatewayHttp,
    gatewayGrpc: plan.gatewayGrpc ?? moved.gatewayGrpc,
    extraRouters: Array.from({ length: (plan.routerReplicas ?? 1) - 1 }, (_, replica) => ({
      listen: moved.router + routerReplicaStride * (replica + 1),
      metrics: moved.routerMetrics + routerReplicaStride * (replica + 1),
    })),
  });
  const taken = new Map<number, string>();
  for (const [what, port] of listeningPorts(ports, plan.workers)) {
    if (port > 65_535) throw new Error(`${what} would listen on port ${port}, past 65535: choose a smaller --port-offset`);
    const other = taken.get(port);
    if (other !== undefined) throw new Error(`${other} and ${what} would both listen on port ${port}`);
    taken.set(port, what);
  }
  return ports;
}

/** Every port a mesh of `workers` workers listens on, each with what listens there. */
export function listeningPorts(ports: MeshPorts, workers: number): [what: string, port: number][] {
  const list: [string, number][] = [
    ["the gateway's HTTP API", ports.gatewayHttp],
    ["the gateway's gRPC API", ports.gatewayGrpc],
    ["admission", ports.admission],
    ["the router", ports.router],
    ["memory-guard", ports.memoryGuard],
    ["admission's metrics", ports.admissionMetrics],
    ["the router's metrics", ports.routerMetrics],
    ["memory-guard's metrics", ports.memoryGuardMetrics],
    ...ports.extraRouters.flatMap(({ listen, metrics }, index): [string, number][] => [
      [`router-${index + 1}`, listen],
      [`router-${index + 1}'s metrics`, metrics],
    ]),
  ];
  for (let index = 0; index < workers; index += 1) {
    list.push([`worker-${index}`, ports.workerBase + index], [`worker-${index}'s metrics`, ports.workerMetricsBase + index]);
  }
  return list;
}

export interface MeshLayout {
  readonly ports: MeshPorts;
  readonly host: string;
  readonly workers: number;
  /** Extra flags for every worker (e.g. --engine llamacpp --model-path …). */
  readonly workerArgs: readonly string[];
  /** Extra flags for worker i alone, after the shared ones. */
  readonly workerArgsOf?: (index: number) => readonly string[];
  /** Worker i gets --gpu-index i: one worker per GPU. */
  readonly gpuPerWorker?: boolean;
  /** Extra flags for the gateway. */
  readonly gatewayArgs?: readonly string[];
  /** Extra flags for admission. */
  readonly admissionArgs?: readonly string[];
  /** Extra flags for the router (every replica). */
  readonly routerArgs?: readonly string[];
  /**
   * Internal gRPC security: the directory ensureLocalPki filled (each service gets its
   * <role>/ subdirectory), or "insecure" for plaintext.
   */
  readonly security: { readonly pkiDir: string } | "insecure";
}

/** The compiled entry point of a service, e.g. dist/services/router/main.js. */
export const entryPoint = (relative: string) => join(repoRoot(), "dist", relative);

/** The Node flag that starts OpenTelemetry before anything else in a child. */
export const telemetryImport = () => ["--import", entryPoint("services/common/telemetry/register.js")];

/** The child processes of a local mesh, in start order. */
export function meshChildren(layout: MeshLayout): ChildSpec[] {
  const { ports, host } = layout;
  const at = (port: number) => `${host}:${port}`;
  const otel = (name: string) => ({ OTEL_SERVICE_NAME: `infermesh-${name}` });
  const security = layout.security;
  const tls = (role: MeshRole) => (security === "insecure" ? ["--insecure", "true"] : ["--tls-dir", join(security.pkiDir, role)]);
  const routers = [{ listen: ports.router, metrics: ports.routerMetrics }, ...ports.extraRouters];
  const routerAddresses = routers.map((router) => at(router.listen)).join(",");
  const children: ChildSpec[] = [
    {
      name: "memory-guard",
      script: entryPoint("services/memory-guard/main.js"),
      args: ["--listen", at(ports.memoryGuard), "--metrics-port", String(ports.memoryGuardMetrics), ...tls("memory-guard")],
      env: otel("memory-guard"),
    },
    ...routers.map((router, index) => ({
      name: index === 0 ? "router" : `router-${index}`,
      script: entryPoint("services/router/main.js"),
      args: [
        "--listen",
        at(router.listen),
        "--metrics-port",
        String(router.metrics),
        "--memory-guard-address",
        at(ports.memoryGuard),
        ...tls("router"),
        ...(layout.routerArgs ?? []),
      ],
      env: otel("router"),
    })),
    {
      name: "admission",
      script: entryPoint("services/admission/main.js"),
      args: [
        "--listen",
        at(ports.admission),
        "--metrics-port",
        String(ports.admissionMetrics),
        "--memory-guard-address",
        at(ports.memoryGuard),
        ...tls("admission"),
        ...(layout.admissionArgs ?? []),
      ],
      env: otel("admission"),
    },
  ];
  for (let index = 0; index < layout.workers; index += 1) {
    children.push({
      name: `worker-${index}`,
      script: entryPoint("services/worker/main.js"),
      args: [
        "--worker-id",
        `worker-${index}`,
        "--listen",
        at(ports.workerBase + index),
        "--metrics-port",
        String(ports.workerMetricsBase + index),
        "--router-address",
        routerAddresses,
        "--memory-guard-address",
        at(ports.memoryGuard),
        ...(layout.gpuPerWorker ? ["--gpu-index", String(index)] : []),
        ...tls("worker"),
        ...layout.workerArgs,
        ...(layout.workerArgsOf?.(index) ?? []),
      ],
      env: otel("worker"),
    });
  }
  children.push({
    name: "gateway",
    script: entryPoint("gateway/main.js"),
    args: [
      "--host",
      host,
      "--port",
      String(ports.gatewayHttp),
      "--grpc-listen",
      at(ports.gatewayGrpc),
      "--admission-address",
      at(ports.admission),
      "--router-address",
      routerAddresses,
      "--memory-guard-address",
      at(ports.memoryGuard),
      ...tls("gateway"),
      ...(layout.gatewayArgs ?? []),
    ],
    env: otel("gateway"),
  });
  return children;
}
