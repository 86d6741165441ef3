import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";

/** A Prometheus registry with Node's default process metrics, labelled by service. */
export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * Serves GET /metrics from `registry`, and the probes a kubelet can reach without a
 * mesh certificate: GET /healthz (the process answers) and GET /readyz (200 while
 * `ready()` says so, 503 otherwise). Returns the server and the bound port.
 */
export async function startMetricsServer(
  host: string,
  port: number,
  registry: Registry,
  ready: () => boolean = () => true,
): Promise<{ server: Server; port: number }> {
  const server = createServer((request, response) => {
    const path = request.url?.split("?")[0];
    if (request.method === "GET" && path === "/healthz") {
      response.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      return;
    }
    if (request.method === "GET" && path === "/readyz") {
      const serving = ready();
      response.writeHead(serving ? 200 : 503, { "content-type": "text/plain" }).end(serving ? "ready\n" : "not ready\n");
      return;
    }
    if (request.method !== "GET" || path !== "/metrics") {
      response.writeHead(404).end();
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { "content-type": registry.contentType }).end(text),
      () => response.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return { server, port: (server.address() as AddressInfo).port };
}
