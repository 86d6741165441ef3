/**
 * OpenTelemetry bootstrap, loaded before anything else with
 * `node --import ./dist/services/common/telemetry/register.js`. Tracing is on only when
 * an OTLP endpoint or OTEL_TRACES_EXPORTER is set, through the standard OTEL_*
 * variables (exporter, sampler, propagators, resource); otherwise nothing is started.
 * The spans themselves come from infermesh's own middleware (tracing.ts, and the
 * gateway's HTTP hooks), not from auto-instrumentation: nothing is patched, and trace
 * contexts are passed explicitly rather than through AsyncLocalStorage.
 */
import { NodeSDK } from "@opentelemetry/sdk-node";
import { SynchronousContextManager, tracingOn } from "./tracing.js";

let sdk: NodeSDK | undefined;

/** Flushes and stops the SDK; call on the way out so the last spans are exported. */
export async function shutdownTelemetry(): Promise<void> {
  const running = sdk;
  sdk = undefined;
  await running?.shutdown().catch(() => undefined);
}

// This file is the one place with a side effect at import: that is its purpose.
if (tracingOn) {
  // Metrics are scraped by Prometheus (prom-client); logs go to stdout.
  // No AsyncLocalStorage: trace contexts are passed explicitly (see tracing.ts).
  sdk = new NodeSDK({ instrumentations: [], metricReaders: [], contextManager: new SynchronousContextManager() });
  sdk.start();
}
