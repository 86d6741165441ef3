/**
 * The deploy files cannot be run here (no Docker engine, no cluster), so they are
 * checked against the code: every setting they pass is one the service knows and
 * accepts, ports agree between settings, containers, probes and Services, and every
 * command names a compiled entry point.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { parseAllDocuments } from "yaml";
import { loadGatewayConfig } from "../../gateway/config.js";
import { loadAdmissionConfig } from "../../services/admission/config.js";
import { repoRoot } from "../../services/common/paths.js";
import { loadMemoryGuardConfig } from "../../services/memory-guard/config.js";
import { loadRouterConfig } from "../../services/router/config.js";
import { loadWorkerConfig } from "../../services/worker/config.js";

const root = repoRoot();
const loaders: Record<string, (env: Record<string, string>) => unknown> = {
  "dist/gateway/main.js": (env) => loadGatewayConfig({ argv: [], env }),
  "dist/services/admission/main.js": (env) => loadAdmissionConfig({ argv: [], env }),
  "dist/services/router/main.js": (env) => loadRouterConfig({ argv: [], env }),
  "dist/services/memory-guard/main.js": (env) => loadMemoryGuardConfig({ argv: [], env }),
  "dist/services/worker/main.js": (env) => loadWorkerConfig({ argv: [], env }),
};
const prefixes = ["INFERMESH_GATEWAY_", "INFERMESH_ADMISSION_", "INFERMESH_ROUTER_", "INFERMESH_MEMORY_GUARD_", "INFERMESH_WORKER_"];

/** Loads a service's config from container env; $(VAR) references become a plausible value. */
function checkSettings(where: string, script: string, env: Record<string, string>): any {
  const load = loaders[script];
  assert.ok(load, `${where}: ${script} is an infermesh service`);
  const prefix = prefixes.find((candidate) => Object.keys(env).some((key) => key.startsWith(candidate)))!;
  const resolved = Object.fromEntries(
    Object.entries(env)
      .filter(([key]) => key.startsWith("INFERMESH_"))
      .map(([key, value]) => [key, value.replace(/\$\((\w+)\)/g, (_match, name: string) => (name.endsWith("IP") ? "10.0.0.1" : "pod-0"))]),
  );
  for (const key of Object.keys(resolved)) assert.ok(key.startsWith(prefix), `${where}: ${key} is not a setting of this service`);
  // loadConfig rejects nothing unknown from the environment, so compare keys with the schema's too.
  const config = load(resolved) as Record<string, unknown>;
  const known = new Set(Object.keys(config).map((key) => `${prefix}${key.replace(/[A-Z]/g, (letter) => `_${letter}`).toUpperCase()}`));
  for (const key of Object.keys(resolved)) assert.ok(known.has(key), `${where}: ${key} is not a setting of ${script}`);
  return config;
}

const portOf = (address: string) => Number(address.split(":").pop());

test("every Kubernetes manifest passes settings the service accepts, on consistent ports", () => {
  const directory = join(root, "deploy/k8s");
  const files = readdirSync(directory).filter((file) => file.endsWith(".yaml"));
  assert.ok(files.length >= 5);
  const deployments = new Set<string>();
  for (const file of files) {
    const documents = parseAllDocuments(readFileSync(join(directory, file), "utf8")).map((document) => document.toJS());
    const services = documents.filter((document) => document.kind === "Service");
    for (const deployment of documents.filter((document) => document.kind === "Deployment")) {
      deployments.add(deployment.metadata.name);
      for (const container of deployment.spec.template.spec.containers) {
        const where = `${file}/${container.name}`;
        const script = container.args[0];
        assert.ok(existsSync(join(root, script)), `${where}: ${script} is built`);
        const env = Object.fromEntries(container.env.filter((entry: any) => "value" in entry).map((entry: any) => [entry.name, String(entry.value)]));
        const config = checkSettings(where, script, env);
        const containerPorts = new Map<string, number>(container.ports.map((entry: any) => [entry.name, entry.containerPort]));
        const grpcPort = script === "dist/gateway/main.js" ? portOf(config.grpcListen) : portOf(config.listen);
        assert.equal(containerPorts.get("grpc"), grpcPort, `${where}: the grpc containerPort is the one it listens on`);
        if (config.metricsPort !== undefined) assert.equal(containerPorts.get("metrics"), config.metricsPort, `${where}: metrics port`);
        if (script === "dist/gateway/main.js") assert.equal(containerPorts.get("http"), config.port, `${where}: http port`);
        for (const probe of [container.readinessProbe, container.livenessProbe, container.startupProbe].filter(Boolean)) {
          if (probe.grpc) assert.equal(probe.grpc.port, grpcPort, `${where}: the gRPC probe targets the gRPC port`);
          if (probe.httpGet) assert.ok(containerPorts.has(probe.httpGet.port), `${where}: the HTTP probe targets a named port`);
        }
        for (const service of services) {
          for (const servicePort of service.spec.ports) {
            assert.ok(containerPorts.has(servicePort.targetPort), `${file}: Service port ${servicePort.name} targets a container port`);
          }
        }
      }
    }
  }
  assert.deepEqual([...deployments].sort(), [
    "infermesh-admission",
    "infermesh-gateway",
    "infermesh-memory-guard",
    "infermesh-router",
    "infermesh-worker",
  ]);
});

test("every Compose service passes settings it accepts, and Prometheus scrapes their metrics ports", () => {
  const compose = parseAllDocuments(readFileSync(join(root, "deploy/compose/compose.yaml"), "utf8"))[0]!.toJS() as any;
  const metricsTargets = new Set<string>();
  for (const [name, service] of Object.entries<any>(compose.services)) {
    if (!String(service.image).startsWith("infermesh")) continue;
    const script = service.command[0];
    const env = Object.fromEntries(Object.entries(service.environment).map(([key, value]) => [key, String(value)]));
    const config = checkSettings(`compose/${name}`, script, env);
    metricsTargets.add(`${name}:${config.metricsPort ?? config.port}`);
  }
  const prometheus = parseAllDocuments(readFileSync(join(root, "deploy/prometheus/prometheus.yml"), "utf8"))[0]!.toJS() as any;
  const scraped = new Set(prometheus.scrape_configs.flatMap((job: any) => job.static_configs.flatMap((entry: any) => entry.targets)));
  assert.deepEqual([...scraped].sort(), [...metricsTargets].sort());
});
