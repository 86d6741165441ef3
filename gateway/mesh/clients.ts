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
  readonly admission: ReplicaSet<Client<typeof AdmissionServiceDefinition, TraceOptions>>;
  /** The router replicas: picks spread over them and fail over between them. */
  readonly router: RouterReplicas;
  /** Every control-plane replica's part of a bug report. */
  readonly debug: {
    readonly admission: readonly Client<typeof DebugServiceDefinition>[];
    readonly router: readonly Client<typeof DebugServiceDefinition>[];
    readonly memoryGuard: readonly Client<typeof DebugServiceDefinition>[];
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
  private readonly channels: Channel[];

  constructor(
    private readonly security: MeshSecurity,
    admissionAddresses: readonly string[],
    routerAddresses: readonly string[],
    memoryGuardAddresses: readonly string[],
    private readonly unaryTimeoutMs: number,
  ) {
    const admissionChannels = admissionAddresses.map((address) => security.channel(address, "admission"));
    const routerChannels = routerAddresses.map((address) => security.channel(address, "router"));
    // Only the debug bundle talks to memory-guard; grpc-js connects on the first call.
    const memoryGuardChannels = memoryGuardAddresses.map((address) => security.channel(address, "memory-guard"));
    this.channels = [...admissionChannels, ...routerChannels, ...memoryGuardChannels];
    this.admission = new ReplicaSet(
      admissionChannels.map((channel) => createGrpcClient(AdmissionServiceDefinition, channel, unaryTimeoutMs)),
    );
    this.router = new RouterReplicas(routerChannels.map((channel) => createGrpcClient(RouterServiceDefinition, channel, unaryTimeoutMs)));
    this.debug = {
      admission: admissionChannels.map((channel) => createGrpcClient(DebugServiceDefinition, channel, unaryTimeoutMs)),
      router: routerChannels.map((channel) => createGrpcClient(DebugServiceDefinition, channel, unaryTimeoutMs)),
      memoryGuard: memoryGuardChannels.map((channel) => createGrpcClient(DebugServiceDefinition, channel, unaryTimeoutMs)),
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
    for (const channel of this.channels) channel.close();
    for (const { channel } of this.workers.values()) channel.close();
    this.workers.clear();
  }
}
