import type { ServerCredentials } from "@grpc/grpc-js";
import { createServer, type Server } from "nice-grpc";
import { HealthDefinition, HealthServiceImpl, HealthState } from "nice-grpc-server-health";
import type { Logger } from "./logger.js";
import { createDebugService, type DebugSource } from "./debug-info.js";
import { DebugServiceDefinition } from "../../gen/infermesh/debug/v1/debug_service.js";
import { addReflection, DescriptorIndex } from "./reflection.js";
import { guardDecoding, refuseUndecodable } from "./request-decoding.js";
import { traceServerCalls, tracingOn } from "./telemetry/tracing.js";

/** Server channel options: keepalives find dead peers; a maximum connection age makes
 * clients reconnect now and then, so HTTP/2 connections rebalance across replicas. */
export const serverChannelOptions = Object.freeze({
  "grpc.keepalive_time_ms": 20_000,
  "grpc.keepalive_timeout_ms": 10_000,
  "grpc.keepalive_permit_without_calls": 1,
  "grpc.http2.min_ping_interval_without_data_ms": 5_000,
  "grpc.max_connection_age_ms": 30 * 60_000,
  // Long streams (a generation, a worker's membership) may finish on the old connection.
  "grpc.max_connection_age_grace_ms": 60 * 60_000,
});

/** A listening gRPC server with health and reflection. */
export interface GrpcServer {
  readonly server: Server;
  readonly health: HealthState;
  /** The port it listens on (useful when asked for port 0). */
  readonly port: number;
  /** Sets every service (and the overall "") to SERVING or NOT_SERVING. */
  setServing(serving: boolean): void;
  /** Whether the server reports SERVING (what an HTTP readiness probe reads). */
  readonly serving: boolean;
  /** Waits up to `graceMs` for calls to finish, then cuts the rest. */
  close(graceMs: number): Promise<void>;
}

/**
 * Creates a nice-grpc server with grpc.health.v1 and reflection, lets `addServices`
 * add the process's own services, listens on `address` with `credentials` (mutual TLS
 * and authorization inside the mesh, see MeshSecurity) and reports SERVING.
 */
export async function startGrpcServer(options: {
  address: string;
  credentials: ServerCredentials;
  serviceNames: readonly string[];
  /** Adds the process's services; requests they cannot decode are refused with INVALID_ARGUMENT. */
  addServices: (server: Pick<Server, "add">) => void;
  logger: Logger;
  /** The process's part of a bug report, served as DebugService (mesh services; not the public API). */
  debug?: DebugSource;
}): Promise<GrpcServer> {
  const created = createServer(serverChannelOptions);
  const server = (tracingOn ? created.use(traceServerCalls()) : created).use(refuseUndecodable());
  const contracts = DescriptorIndex.compiled();
  const health = HealthState();
  server.add(HealthDefinition, HealthServiceImpl(health));
  const serviceNames = options.debug ? [...options.serviceNames, DebugServiceDefinition.fullName] : options.serviceNames;
  addReflection(server, serviceNames, contracts);
  if (options.debug) server.add(guardDecoding(DebugServiceDefinition as never, contracts), createDebugService(options.debug) as never);
  options.addServices({
    add: (definition, implementation) => server.add(guardDecoding(definition as never, contracts), implementation as never),
  });
  const port = await server.listen(options.address, options.credentials);
  let serving = false;
  const setServing = (value: boolean) => {
    serving = value;
    for (const name of ["", ...options.serviceNames]) health.setStatus(value ? "healthy" : "unhealthy", name);
  };
  setServing(true);
  options.logger.info({ address: options.address, port, services: options.serviceNames }, "gRPC server listening");
  return {
    server,
    health,
    port,
    setServing,
    get serving() {
      return serving;
    },
    async close(graceMs) {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), graceMs);
      });
      const outcome = await Promise.race([server.shutdown().then(() => "done" as const), timedOut]);
      clearTimeout(timer);
      if (outcome === "timeout") {
        options.logger.warn({ graceMs }, "calls still open after the grace period; cutting them");
        server.forceShutdown();
      }
    },
  };
}
