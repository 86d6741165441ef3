/**
 * OpenTelemetry bootstrap, loaded before anything else with
 * `node --import ./dist/services/common/telemetry/register.js`. It must run before
 * grpc-js is loaded so @opentelemetry/instrumentation-grpc can patch it (nice-grpc
 * sits on grpc-js). Tracing is on only when an OTLP endpoint or OTEL_TRACES_EXPORTER
 * is set, through the standard OTEL_* variables; otherwise nothing is started.
 */
import { register } from "node:module";
import { GrpcInstrumentation } from "@opentelemetry/instrumentation-grpc";
import { HttpInstrumentation } from "@opentelemetry/instrumentation-http";
import { NodeSDK } from "@opentelemetry/sdk-node";

let sdk: NodeSDK | undefined;

/** HTTP paths served without a trace: the probes and the Prometheus scrape. */
const untracedPaths = new Set(["/healthz", "/readyz", "/metrics"]);

/** Whether the standard OTEL_* variables ask for trace export. */
export function tracingRequested(env: Readonly<Record<string, string | undefined>>): boolean {
  if (env.OTEL_SDK_DISABLED === "true") return false;
  const exporter = env.OTEL_TRACES_EXPORTER;
  if (exporter !== undefined && exporter !== "") return exporter !== "none";
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/** Flushes and stops the SDK; call on the way out so the last spans are exported. */
export async function shutdownTelemetry(): Promise<void> {
  const running = sdk;
  sdk = undefined;
  await running?.shutdown().catch(() => undefined);
}

// This file is the one place with a side effect at import: that is its purpose.
if (tracingRequested(process.env)) {
  register("@opentelemetry/instrumentation/hook.mjs", import.meta.url);
  sdk = new NodeSDK({
    instrumentations: [
      // Probes and scrapes are not requests anyone traces: a poll every second would be a trace a second.
      new HttpInstrumentation({ ignoreIncomingRequestHook: (request) => untracedPaths.has(request.url?.split("?", 1)[0] ?? "") }),
      new GrpcInstrumentation({ ignoreGrpcMethods: ["Check", "Watch", "ServerReflectionInfo"].map((name) => new RegExp(`^${name}$`)) }),
    ],
    // Metrics are scraped by Prometheus (prom-client); logs go to stdout.
    metricReaders: [],
  });
  sdk.start();
}
