import type { Context } from "@opentelemetry/api";
import type { Channel } from "@grpc/grpc-js";
import { createClient, type Client } from "nice-grpc";
import { AdmissionServiceDefinition } from "../../gen/infermesh/admission/v1/admission_service.js";
import { DebugServiceDefinition } from "../../gen/infermesh/debug/v1/debug_service.js";
import { RouterServiceDefinition } from "../../gen/infermesh/router/v1/router_service.js";
import { WorkerServiceDefinition } from "../../gen/infermesh/worker/v1/worker_service.js";
import { createGrpcClient } from "../../services/common/grpc-client.js";
import type { MeshSecurity } from "../../services/common/mesh-security/mesh-security.js";
import { RouterReplicas } from "./router-replicas.js";
import { connectReplicas, type ReplicaConnection } from "../../services/common/replica-discovery.js";
import type { Logger } from "../../services/common/logger.js";
import type { MeshRole } from "../../services/common/mesh-security/identity.js";
import type { CompatServiceDefinition } from "nice-grpc/lib/service-definitions/index.js";
import { ReplicaSet } from "../../services/common/replica-set.js";
import type { TraceOptions } from "../../services/common/telemetry/tracing.js";

/** Loading gpt-oss-120b from disk takes minutes. */
const adminTimeoutMs = 15 * 60_000;

/**
 * A call made for a request: its deadline or cancellation, and the trace context its
 * span is a child of (the request's span). These are also the call's options.
 */
export interface MeshCall {
  readonly signal: AbortSignal;
  readonly trace?: Context;
}

/** The gateway's clients into the mesh; one channel per peer, reused by every request. */
export class MeshClients {
  /** The admission replicas: a request asks them in turn and passes to the next when one is down. */
  readonly admission = new ReplicaSet<Client<typeof AdmissionServiceDefinition, TraceOptions>>();
  /** The router replicas: picks spread over them and fail over between them. */
  readonly router: RouterReplicas;
  /** Every control-plane replica's part of a bug report. */
  readonly debug = {
    admission: new ReplicaSet<Client<typeof DebugServiceDefinition>>(),
    router: new ReplicaSet<Client<typeof DebugServiceDefinition>>(),
    memoryGuard: new ReplicaSet<Client<typeof DebugServiceDefinition>>(),
  };
  private readonly workers = new Map<
    string,
    {
      channel: Channel;
      client: Client<typeof WorkerServiceDefinition>;
      work?: Client<typeof WorkerServiceDefinition>;
      admin?: Client<typeof WorkerServiceDefinition>;
      debug?: Client<typeof DebugServiceDefinition>;
    }
  >();
  /** Closes the control-plane channels and stops discovering replicas. */
  private readonly lifetime = new AbortController();

  /**
   * Each address list names a service's replicas: host:port entries, or dns:///host:port
   * for every pod behind a headless Service (re-resolved as replicas come and go).
   */
  constructor(
    private readonly security: MeshSecurity,
    addresses: { readonly admission: readonly string[]; readonly router: readonly string[]; readonly memoryGuard: readonly string[] },
    private readonly unaryTimeoutMs: number,
    logger: Logger,
  ) {
    const routers = new ReplicaSet<Client<typeof RouterServiceDefinition, TraceOptions>>();
    this.router = new RouterReplicas(routers);
    const discovery = (peer: string) => ({ signal: this.lifetime.signal, logger: logger.child({ peer }) });
    connectReplicas(
      addresses.admission,
      (address) => this.connect(address, "admission", AdmissionServiceDefinition),
      (replicas) => {
        this.admission.setMembers(replicas.map(({ client }) => client));
        this.debug.admission.setMembers(replicas.map(({ debug }) => debug));
      },
      discovery("admission"),
    );
    connectReplicas(
      addresses.router,
      (address) => this.connect(address, "router", RouterServiceDefinition),
      (replicas) => {
        routers.setMembers(replicas.map(({ client }) => client));
        this.debug.router.setMembers(replicas.map(({ debug }) => debug));
      },
      discovery("router"),
    );
    // Only the debug bundle talks to memory-guard; grpc-js connects on the first call.
    connectReplicas(
      addresses.memoryGuard,
      (address) => this.connect(address, "memory-guard", DebugServiceDefinition),
      (replicas) => this.debug.memoryGuard.setMembers(replicas.map(({ client }) => client)),
      discovery("memory-guard"),
    );
  }

  /** A control-plane replica's channel: the service's client on it and its debug client. */
  private connect<Definition extends CompatServiceDefinition>(
    address: string,
    peer: MeshRole,
    definition: Definition,
  ): ReplicaConnection<{ client: Client<Definition, TraceOptions>; debug: Client<typeof DebugServiceDefinition> }> {
    const channel = this.security.channel(address, peer);
    return {
      clients: {
        client: createGrpcClient(definition, channel, this.unaryTimeoutMs),
        debug: createGrpcClient(DebugServiceDefinition, channel, this.unaryTimeoutMs),
      },
      close: () => channel.close(),
    };
  }

  /** The worker's part of a bug report. */
  workerDebug(address: string): Client<typeof DebugServiceDefinition> {
    const entry = this.workerEntry(address);
    entry.debug ??= createGrpcClient(DebugServiceDefinition, entry.channel, this.unaryTimeoutMs);
    return entry.debug;
  }

  /** The client of the worker at host:port (created on first use). */
  worker(address: string): Client<typeof WorkerServiceDefinition> {
    return this.workerEntry(address).client;
  }

  /**
   * The same worker's client for unary calls that do a request's work (Embed): no
   * deadline of its own, the caller's signal (the request's deadline) bounds them.
   */
  workerForWork(address: string): Client<typeof WorkerServiceDefinition> {
    const entry = this.workerEntry(address);
    entry.work ??= createClient(WorkerServiceDefinition, entry.channel);
    return entry.work;
  }

  /** The same worker's client for admin calls, whose deadline allows loading a large model. */
  workerAdmin(address: string): Client<typeof WorkerServiceDefinition> {
    const entry = this.workerEntry(address);
    entry.admin ??= createGrpcClient(WorkerServiceDefinition, entry.channel, adminTimeoutMs);
    return entry.admin;
  }

  private workerEntry(address: string) {
    let entry = this.workers.get(address);
    if (!entry) {
      // The server must prove it is a worker: an address the router hands out is not enough.
      const channel = this.security.channel(address, "worker");
      entry = { channel, client: createGrpcClient(WorkerServiceDefinition, channel, this.unaryTimeoutMs) };
      this.workers.set(address, entry);
    }
    return entry;
  }

  close(): void {
    this.lifetime.abort();
    for (const { channel } of this.workers.values()) channel.close();
    this.workers.clear();
  }
}
