/** Starts real infermesh processes on free loopback ports for integration tests. */
import { mkdtempSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Channel, ChannelCredentials } from "@grpc/grpc-js";
import { pino } from "pino";
import { defaultTrustDomain, type MeshRole } from "../../services/common/mesh-security/identity.js";
import { ensureLocalPki } from "../../services/common/mesh-security/local-pki.js";
import { MeshSecurity } from "../../services/common/mesh-security/mesh-security.js";
import { repoRoot } from "../../services/common/paths.js";
import { meshChildren, telemetryImport, type MeshPorts } from "../../services/launcher/mesh.js";
import { Supervisor } from "../../services/launcher/supervisor.js";

/** Ports the OS says are free right now. */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Server>((resolve) => {
          const server = createServer();
          server.listen(0, "127.0.0.1", () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

/** `count` consecutive ports, none of them in `avoid`, that the OS lets us bind right now. */
export async function freePortRange(count: number, avoid: readonly number[] = []): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const range = Array.from({ length: count }, (_, index) => base + index);
    if (range.some((port) => avoid.includes(port))) continue;
    const bound = await Promise.all(
      range.map(
        (port) =>
          new Promise<Server | undefined>((resolve) => {
            const server = createServer();
            server.once("error", () => resolve(undefined));
            server.listen(port, "127.0.0.1", () => resolve(server));
          }),
      ),
    );
    await Promise.all(bound.map((server) => server && new Promise((resolve) => server.close(resolve))));
    if (bound.every(Boolean)) return base;
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(what: string, check: () => Promise<T> | T, timeoutMs = 20_000): Promise<NonNullable<T>> {
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  while (performance.now() < deadline) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      lastError = error;
    }
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ""}`);
}

/** A span as the OTLP/HTTP JSON exporter sends it, with its process's service name. */
export interface CollectedSpan {
  readonly service: string;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string;
  readonly name: string;
  readonly attributes: Record<string, unknown>;
  /** OTLP's status code: 0 unset, 1 ok, 2 error. */
  readonly statusCode: number;
}

/** A minimal OTLP/HTTP (JSON) trace receiver: what a Collector would get. */
export class OtlpCollector {
  readonly spans: CollectedSpan[] = [];
  private server: Server | undefined;
  endpoint = "";

  async start(): Promise<void> {
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        try {
          this.ingest(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        } catch {
          // Not JSON: ignore (the test would then miss spans and say so).
        }
        response.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    await new Promise((resolve) => this.server?.close(resolve));
  }

  private ingest(body: { resourceSpans?: any[] }): void {
    for (const resourceSpans of body.resourceSpans ?? []) {
      const service = attributesOf(resourceSpans.resource?.attributes)["service.name"] as string;
      for (const scopeSpans of resourceSpans.scopeSpans ?? []) {
        for (const span of scopeSpans.spans ?? []) {
          this.spans.push({
            service,
            traceId: span.traceId,
            spanId: span.spanId,
            parentSpanId: span.parentSpanId ?? "",
            name: span.name,
            attributes: attributesOf(span.attributes),
            statusCode: span.status?.code ?? 0,
          });
        }
      }
    }
  }
}

function attributesOf(list: { key: string; value: Record<string, unknown> }[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key, value } of list ?? []) out[key] = plainValue(value);
  return out;
}

/** An OTLP JSON AnyValue as a plain value: `{stringValue: "x"}` is "x", an arrayValue an array. */
function plainValue(value: Record<string, unknown>): unknown {
  const array = value.arrayValue as { values?: Record<string, unknown>[] } | undefined;
  return array ? (array.values ?? []).map(plainValue) : Object.values(value)[0];
}

export interface TestMesh {
  readonly baseUrl: string;
  readonly ports: MeshPorts;
  /** Each router replica's metrics port: ports.routerMetrics, then the extra replicas'. */
  readonly routerMetricsPorts: readonly number[];
  /** Each admission replica's metrics port, the first's first. */
  readonly admissionMetricsPorts: readonly number[];
  /** Each memory-guard replica's metrics port, the first's first. */
  readonly memoryGuardMetricsPorts: readonly number[];
  readonly supervisor: Supervisor;
  /** Every output line of every process, "[name] line". */
  readonly logs: string[];
  /** The mesh's CA and certificates (one directory per role), made for this mesh alone. */
  readonly pkiDir: string;
  /** A channel to the internal service `peer` on `port`, holding the `as` identity's certificate. */
  channel(port: number, peer: MeshRole, as: MeshRole): Channel;
  stop(): Promise<void>;
}

/** A fresh mesh CA and every role's certificate in a temporary directory. */
export async function makeTestPki(): Promise<string> {
  const directory = mkdtempSync(join(tmpdir(), "infermesh-pki-"));
  await ensureLocalPki(directory, defaultTrustDomain);
  return directory;
}

const holding = (pkiDir: string, as: MeshRole) =>
  MeshSecurity.load(as, { tlsDir: join(pkiDir, as), insecure: false, trustDomain: defaultTrustDomain }, pino({ level: "silent" }));

/** A channel to `peer` at 127.0.0.1:`port` holding the `as` certificate from `pkiDir`. */
export function meshChannel(pkiDir: string, port: number, peer: MeshRole, as: MeshRole): Channel {
  return holding(pkiDir, as).channel(`127.0.0.1:${port}`, peer);
}

/** Credentials for a plain grpc-js client that reaches `peer` holding the `as` certificate. */
export function meshCredentials(pkiDir: string, peer: MeshRole, as: MeshRole): ChannelCredentials {
  return holding(pkiDir, as).credentialsFor(peer);
}

/**
 * Where tests build and cache the test model: in the repository, not the per-user cache
 * `npm start` uses, so a test run writes nothing outside the checkout.
 */
export const testModelDir = join(repoRoot(), ".cache/models");

/** Starts gateway, admission, router, memory-guard and one llama.cpp worker (or `workers` of them) on the tiny test model. */
export async function startTestMesh(
  options: {
    otlpEndpoint?: string;
    /** With otlpEndpoint: the share of traces kept (parent-based trace-id ratio); 1 unless given. */
    traceSampleRatio?: number;
    admissionArgs?: string[];
    routerArgs?: string[];
    workerArgs?: string[];
    /** Extra flags for worker i alone. */
    workerArgsOf?: (index: number) => string[];
    gatewayArgs?: string[];
    /** Workers to start (ports workerBase + i); 1 unless given. */
    workers?: number;
    /** Router replicas ("router", then "router-1", …); 1 unless given. */
    routers?: number;
    /** Admission replicas ("admission", "admission-1", …); 1 unless given. Several need `redisUrl`. */
    admissions?: number;
    /** Memory-guard replicas; 1 unless given. */
    memoryGuards?: number;
    /** The shared mode's Redis, for admission. */
    redisUrl?: string;
  } = {},
): Promise<TestMesh> {
  const workers = options.workers ?? 1;
  const pkiDir = await makeTestPki();
  const replicas = { router: options.routers ?? 1, admission: options.admissions ?? 1, memoryGuard: options.memoryGuards ?? 1 };
  const extras = replicas.router + replicas.admission + replicas.memoryGuard - 3;
  const free = await freePorts(10 + 2 * extras);
  // Several workers take consecutive ports from workerBase and workerMetricsBase.
  if (workers > 1) {
    free[8] = await freePortRange(workers, free);
    free[9] = await freePortRange(workers, [...free, ...Array.from({ length: workers }, (_, index) => free[8]! + index)]);
  }
  // Replicas past the first: two ports each, after the ten above.
  let next = 10;
  const extraOf = (count: number) =>
    Array.from({ length: count - 1 }, () => {
      next += 2;
      return { listen: free[next - 2]!, metrics: free[next - 1]! };
    });
  const extraReplicas = {
    router: extraOf(replicas.router),
    admission: extraOf(replicas.admission),
    memoryGuard: extraOf(replicas.memoryGuard),
  };
  const ports: MeshPorts = {
    gatewayHttp: free[0]!,
    gatewayGrpc: free[1]!,
    admission: free[2]!,
    router: free[3]!,
    memoryGuard: free[4]!,
    admissionMetrics: free[5]!,
    routerMetrics: free[6]!,
    memoryGuardMetrics: free[7]!,
    workerBase: free[8]!,
    workerMetricsBase: free[9]!,
    extraReplicas,
  };
  const otel: Record<string, string> = options.otlpEndpoint
    ? {
        OTEL_EXPORTER_OTLP_ENDPOINT: options.otlpEndpoint,
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/json",
        OTEL_BSP_SCHEDULE_DELAY: "50",
        ...(options.traceSampleRatio === undefined
          ? { OTEL_TRACES_SAMPLER: "always_on" }
          : { OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: String(options.traceSampleRatio) }),
      }
    : { OTEL_SDK_DISABLED: "true" };
  const logs: string[] = [];
  const supervisor = new Supervisor({
    nodeArgs: telemetryImport(),
    onLine: (child, line) => logs.push(`[${child}] ${line}`),
    onEvent: (message) => logs.push(`[supervisor] ${message}`),
    restartInitialMs: 100,
    stopGraceMs: 5_000,
  });
  const children = meshChildren({
    ports,
    host: "127.0.0.1",
    workers,
    workerArgs: [
      ...["--test-model-size", "tiny", "--gpu", "cpu", "--context-tokens", "2048"],
      ...["--cache-dir", testModelDir, "--model-dir", testModelDir],
      ...(options.workerArgs ?? []),
    ],
    admissionArgs: options.admissionArgs,
    routerArgs: options.routerArgs,
    workerArgsOf: options.workerArgsOf,
    gatewayArgs: options.gatewayArgs,
    redisUrl: options.redisUrl,
    security: { pkiDir },
  }).map((child) => ({ ...child, env: { ...child.env, ...otel, INFERMESH_WORKER_LOG_LEVEL: "debug" } }));
  supervisor.start(children);
  const baseUrl = `http://127.0.0.1:${ports.gatewayHttp}`;
  try {
    await waitFor("the gateway to be ready", () => fetch(`${baseUrl}/readyz`).then((response) => response.ok), 60_000);
  } catch (error) {
    await supervisor.stop();
    throw new Error(`${(error as Error).message}\n${logs.join("\n")}`);
  }
  return {
    baseUrl,
    ports,
    routerMetricsPorts: [ports.routerMetrics, ...extraReplicas.router.map((router) => router.metrics)],
    admissionMetricsPorts: [ports.admissionMetrics, ...extraReplicas.admission.map((admission) => admission.metrics)],
    memoryGuardMetricsPorts: [ports.memoryGuardMetrics, ...extraReplicas.memoryGuard.map((memoryGuard) => memoryGuard.metrics)],
    supervisor,
    logs,
    pkiDir,
    channel: (port, peer, as) => meshChannel(pkiDir, port, peer, as),
    stop: () => supervisor.stop(),
  };
}

/** Reads a Prometheus text metric's value (first sample whose line starts with `prefix`). */
export async function metricValue(url: string, prefix: string): Promise<number | undefined> {
  const text = await fetch(url).then((response) => response.text());
  const line = text.split("\n").find((candidate) => candidate.startsWith(prefix));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

/** Sums every sample of a Prometheus text metric, whatever its labels (0 when absent). */
export async function metricSum(url: string, name: string): Promise<number> {
  const text = await fetch(url).then((response) => response.text());
  return text
    .split("\n")
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `))
    .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(" ") + 1)), 0);
}
