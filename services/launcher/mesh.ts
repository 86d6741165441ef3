import { join } from "node:path";
import type { MeshRole } from "../common/mesh-security/identity.js";
import { repoRoot } from "../common/paths.js";
import type { ChildSpec } from "./supervisor.js";

/** The control-plane services that run as replicas. */
export type ControlPlaneService = "router" | "admission" | "memoryGuard";

/** One extra replica's gRPC and metrics ports. */
export interface ReplicaPorts {
  readonly listen: number;
  readonly metrics: number;
}

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
   * Replicas beyond the first of each control-plane service (the first listens on
   * `router`, `admission`, `memoryGuard`). Workers register with every router and
   * report to every memory-guard; the gateway spreads picks and acquires over the
   * routers and admissions, which share limits through Redis.
   */
  readonly extraReplicas: { readonly [Service in ControlPlaneService]: readonly ReplicaPorts[] };
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
  extraReplicas: { router: [], admission: [], memoryGuard: [] },
});

/** Replica k (from 1) of a service listens k times this above the first replica's ports: clear of the small offsets meshes run side by side at. */
const replicaStride = 1_000;

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
  /** Replicas of each control-plane service (1 unless given); replica k listens 1,000 × k above the first's ports. */
  readonly replicas?: { readonly [Service in ControlPlaneService]?: number };
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
    extraReplicas: {
      router: extraReplicaPorts(plan.replicas?.router, moved.router, moved.routerMetrics),
      admission: extraReplicaPorts(plan.replicas?.admission, moved.admission, moved.admissionMetrics),
      memoryGuard: extraReplicaPorts(plan.replicas?.memoryGuard, moved.memoryGuard, moved.memoryGuardMetrics),
    },
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

/** Replicas 1… of a service whose first replica listens on `listen` and `metrics`. */
const extraReplicaPorts = (replicas = 1, listen: number, metrics: number): ReplicaPorts[] =>
  Array.from({ length: replicas - 1 }, (_, index) => ({
    listen: listen + replicaStride * (index + 1),
    metrics: metrics + replicaStride * (index + 1),
  }));

/** A replica's process name: "router" for the first, "router-1" for the next. */
export const replicaName = (service: string, index: number) => (index === 0 ? service : `${service}-${index}`);

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
    ...(Object.entries(ports.extraReplicas) as [ControlPlaneService, readonly ReplicaPorts[]][]).flatMap(([service, replicas]) =>
      replicas.flatMap(({ listen, metrics }, index): [string, number][] => [
        [replicaName(processName[service], index + 1), listen],
        [`${replicaName(processName[service], index + 1)}'s metrics`, metrics],
      ]),
    ),
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
  /** The shared mode's Redis: admission's limits (required with several admission replicas), the routers' traffic splits, the gateway's stored responses and cache. */
  readonly redisUrl?: string;
  /** Where routers without Redis keep their canary rollouts, a file per router port; absent: in memory. */
  readonly stateDir?: string;
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
  const replicasOf = (service: ControlPlaneService, first: ReplicaPorts) => [first, ...ports.extraReplicas[service]];
  const memoryGuards = replicasOf("memoryGuard", { listen: ports.memoryGuard, metrics: ports.memoryGuardMetrics });
  const routers = replicasOf("router", { listen: ports.router, metrics: ports.routerMetrics });
  const admissions = replicasOf("admission", { listen: ports.admission, metrics: ports.admissionMetrics });
  const addresses = (replicas: readonly ReplicaPorts[]) => replicas.map((replica) => at(replica.listen)).join(",");
  const memoryGuardAddresses = addresses(memoryGuards);
  const routerAddresses = addresses(routers);
  const redis = layout.redisUrl ? ["--redis-url", layout.redisUrl] : [];
  const replica =
    (service: ControlPlaneService, script: string, extra: (index: number) => readonly string[]) =>
    (replicaPorts: ReplicaPorts, index: number): ChildSpec => ({
      name: replicaName(processName[service], index),
      script: entryPoint(script),
      args: ["--listen", at(replicaPorts.listen), "--metrics-port", String(replicaPorts.metrics), ...extra(index)],
      env: otel(processName[service]),
    });
  const children: ChildSpec[] = [
    ...memoryGuards.map(replica("memoryGuard", "services/memory-guard/main.js", () => tls("memory-guard"))),
    ...routers.map(
      replica("router", "services/router/main.js", (index) => [
        ...["--memory-guard-address", memoryGuardAddresses],
        ...redis,
        ...(layout.stateDir && !layout.redisUrl
          ? ["--rollout-state-file", join(layout.stateDir, `router-${routers[index]!.listen}-rollouts.json`)]
          : []),
        ...tls("router"),
        ...(layout.routerArgs ?? []),
      ]),
    ),
    ...admissions.map(
      replica("admission", "services/admission/main.js", () => [
        ...["--memory-guard-address", memoryGuardAddresses],
        ...redis,
        ...tls("admission"),
        ...(layout.admissionArgs ?? []),
      ]),
    ),
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
        memoryGuardAddresses,
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
      addresses(admissions),
      "--router-address",
      routerAddresses,
      "--memory-guard-address",
      memoryGuardAddresses,
      ...redis,
      ...tls("gateway"),
      ...(layout.gatewayArgs ?? []),
    ],
    env: otel("gateway"),
  });
  return children;
}

/** The process name of each control-plane service's replicas. */
const processName: { readonly [Service in ControlPlaneService]: string } = {
  router: "router",
  admission: "admission",
  memoryGuard: "memory-guard",
};
