import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";

/**
 * A registry with Node's default process metrics, labelled by service. It is an
 * OpenMetrics registry, so latency histograms may carry exemplars; `scrape` serves
 * Prometheus's text format to scrapers that do not ask for OpenMetrics.
 */
export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry<typeof Registry.OPENMETRICS_CONTENT_TYPE>();
  registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  // prom-client types a registry by its content type; the metrics take either kind.
  return registry as unknown as Registry;
}

/** The content type Prometheus's text format (0.0.4) is served with. */
const prometheusText = "text/plain; version=0.0.4; charset=utf-8";

/**
 * A scrape of `registry`: OpenMetrics, with exemplars, when the Accept header asks for
 * it (Prometheus does when exemplar storage is on); otherwise Prometheus's text format,
 * which every scraper reads.
 */
export async function scrape(registry: Registry, accept: string | undefined): Promise<{ contentType: string; text: string }> {
  const openMetrics = await registry.metrics();
  if ((registry.contentType as string) !== Registry.OPENMETRICS_CONTENT_TYPE)
    return { contentType: registry.contentType, text: openMetrics };
  if (accept?.includes("application/openmetrics-text")) return { contentType: registry.contentType, text: openMetrics };
  return { contentType: prometheusText, text: toPrometheusText(openMetrics) };
}

/**
 * OpenMetrics text as Prometheus's text format: no exemplars and no `# EOF`, and a
 * counter's family named as its samples (`x_total`), as the text format has it.
 */
export function toPrometheusText(openMetrics: string): string {
  const out: string[] = [];
  for (const line of openMetrics.split("\n")) {
    if (line === "# EOF" || line === "") continue;
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) {
      const [, name, kind] = type;
      if (kind === "counter") {
        // prom-client writes HELP just before TYPE.
        const help = out.at(-1);
        if (help?.startsWith(`# HELP ${name} `)) out[out.length - 1] = `# HELP ${name}_total ${help.slice(`# HELP ${name} `.length)}`;
        out.push(`# TYPE ${name}_total counter`);
      } else {
        out.push(kind === "unknown" ? `# TYPE ${name} untyped` : line);
      }
      continue;
    }
    out.push(line.startsWith("#") ? line : withoutExemplar(line));
  }
  return `${out.join("\n")}\n`;
}

/** A sample line without its exemplar (` # {labels} value timestamp` after the value). */
function withoutExemplar(line: string): string {
  let end = 0;
  const open = line.indexOf("{");
  const space = line.indexOf(" ");
  if (open >= 0 && (space < 0 || open < space)) {
    // Past the label set: quotes and escapes inside label values are skipped.
    let quoted = false;
    for (end = open + 1; end < line.length; end += 1) {
      const char = line[end];
      if (quoted && char === "\\") end += 1;
      else if (char === '"') quoted = !quoted;
      else if (!quoted && char === "}") break;
    }
  }
  const exemplar = line.indexOf(" # ", end);
  return exemplar < 0 ? line : line.slice(0, exemplar);
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
    scrape(registry, request.headers.accept).then(
      ({ contentType, text }) => response.writeHead(200, { "content-type": contentType }).end(text),
      () => response.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return { server, port: (server.address() as AddressInfo).port };
}
