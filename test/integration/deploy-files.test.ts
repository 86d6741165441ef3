/**
 * The deploy files cannot be run here (no Docker engine, no cluster), so they are
 * checked against the code: every setting they pass is one the service knows and
 * accepts, ports agree between settings, containers, probes and Services, and every
 * command names a compiled entry point.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { test } from "node:test";
import { parseAllDocuments, stringify } from "yaml";
import { dashboardJson, dashboardQueries } from "../../deploy/grafana/dashboard.js";
import { monitoringManifests } from "../../deploy/k8s/monitoring.js";
import { gatewayReloadable, loadGatewayConfig } from "../../gateway/config.js";
import { admissionReloadable, loadAdmissionConfig } from "../../services/admission/config.js";
import { spiffeId, defaultTrustDomain, type MeshRole } from "../../services/common/mesh-security/identity.js";
import { admissionRules, debugRules, memoryGuardRules, routerRules, workerRules } from "../../services/common/mesh-security/rules.js";
import { repoRoot } from "../../services/common/paths.js";
import { loadMemoryGuardConfig, memoryGuardReloadable } from "../../services/memory-guard/config.js";
import { loadRouterConfig, routerReloadable } from "../../services/router/config.js";
import { loadWorkerConfig } from "../../services/worker/config.js";
import { exportEngineMetrics } from "../../services/worker/engine-metrics.js";
import { Registry } from "prom-client";

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
  for (const key of Object.keys(resolved))
    assert.ok(known.has(key) || key === `${prefix}CONFIG`, `${where}: ${key} is not a setting of ${script}`);
  // The environment wins over the file: a setting that reloads must come from the file, or it never could.
  for (const key of Object.keys(resolved)) {
    const setting = key
      .slice(prefix.length)
      .toLowerCase()
      .replace(/_([a-z])/g, (_match, letter: string) => letter.toUpperCase());
    assert.ok(!(reloadable[script] ?? []).includes(setting), `${where}: ${key} reloads, so it belongs in the ConfigMap's file`);
  }
  return config;
}

/** The settings each service reloads without a restart (shared mode, as in the cluster). */
const reloadable: Record<string, readonly string[]> = {
  "dist/gateway/main.js": gatewayReloadable,
  "dist/services/admission/main.js": admissionReloadable(true),
  "dist/services/router/main.js": routerReloadable,
  "dist/services/memory-guard/main.js": memoryGuardReloadable,
};

/**
 * A container's config file from its ConfigMap, written where a test can read it: the
 * file the *_CONFIG variable names must be a key of a ConfigMap mounted as a directory
 * (a subPath mount would never see an update, and nothing would reload).
 */
function configMapFile(where: string, container: any, volumes: any[], configMaps: any[], file: string): string {
  const mount = container.volumeMounts.find((volumeMount: any) => volumeMount.mountPath === dirname(file));
  assert.ok(mount, `${where}: ${file} is in a mounted volume`);
  assert.equal(mount.subPath, undefined, `${where}: the ConfigMap is mounted as a directory, not with subPath`);
  const volume = volumes.find((candidate: any) => candidate.name === mount.name);
  const configMap = configMaps.find((candidate: any) => candidate.metadata.name === volume?.configMap?.name);
  assert.ok(configMap, `${where}: ${file} comes from a ConfigMap of the base`);
  const text = configMap.data[basename(file)];
  assert.ok(text, `${where}: ConfigMap ${configMap.metadata.name} has ${basename(file)}`);
  const local = join(mkdtempSync(join(tmpdir(), "infermesh-configmap-")), basename(file));
  writeFileSync(local, text);
  return local;
}

const portOf = (address: string) => Number(address.split(":").pop());

/** What a Secret would hold for a setting the manifests take from one. */
function plausibleSecret(name: string): string {
  assert.match(name, /_REDIS_URL$/, `${name}: only the Redis URL comes from a Secret`);
  return "rediss://:password@redis.internal:6380";
}

test("every Kubernetes manifest passes settings the service accepts, on consistent ports", () => {
  const directory = join(root, "deploy/k8s/base");
  const files = readdirSync(directory).filter(
    (file) => file.endsWith(".yaml") && file !== "kustomization.yaml" && !file.startsWith("mesh-pki") && !file.startsWith("network-"),
  );
  assert.ok(files.length >= 5);
  const deployments = new Set<string>();
  const mounted = new Map<MeshRole, string>();
  const configMaps = parseAllDocuments(readFileSync(join(directory, "config.yaml"), "utf8"))
    .map((document) => document.toJS())
    .filter((document) => document.kind === "ConfigMap");
  const withFile = new Set<string>();
  for (const file of files) {
    const documents = parseAllDocuments(readFileSync(join(directory, file), "utf8")).map((document) => document.toJS());
    const services = documents.filter((document) => document.kind === "Service");
    for (const deployment of documents.filter((document) => document.kind === "Deployment")) {
      deployments.add(deployment.metadata.name);
      for (const container of deployment.spec.template.spec.containers) {
        const where = `${file}/${container.name}`;
        const script = container.args[0];
        assert.ok(existsSync(join(root, script)), `${where}: ${script} is built`);
        // A value from a Secret (the shared mode's Redis URL) is checked as a plausible one.
        const env = Object.fromEntries(
          container.env
            .filter((entry: any) => "value" in entry || entry.valueFrom?.secretKeyRef)
            .map((entry: any) => [entry.name, "value" in entry ? String(entry.value) : plausibleSecret(entry.name)]),
        );
        const fileSetting = Object.keys(env).find((key) => key.endsWith("_CONFIG") && prefixes.some((prefix) => key === `${prefix}CONFIG`));
        if (fileSetting) {
          env[fileSetting] = configMapFile(where, container, deployment.spec.template.spec.volumes, configMaps, env[fileSetting]!);
          withFile.add(script);
        }
        const config = checkSettings(where, script, env);
        const containerPorts = new Map<string, number>(container.ports.map((entry: any) => [entry.name, entry.containerPort]));
        const grpcPort = script === "dist/gateway/main.js" ? portOf(config.grpcListen) : portOf(config.listen);
        assert.equal(containerPorts.get("grpc"), grpcPort, `${where}: the grpc containerPort is the one it listens on`);
        if (config.metricsPort !== undefined) assert.equal(containerPorts.get("metrics"), config.metricsPort, `${where}: metrics port`);
        if (script === "dist/gateway/main.js") assert.equal(containerPorts.get("http"), config.port, `${where}: http port`);
        for (const probe of [container.readinessProbe, container.livenessProbe, container.startupProbe].filter(Boolean)) {
          // The kubelet's gRPC probe cannot present a client certificate; mTLS ports refuse it.
          assert.equal(probe.grpc, undefined, `${where}: no gRPC probe on an mTLS port`);
          assert.ok(containerPorts.has(probe.httpGet.port), `${where}: the HTTP probe targets a named port`);
        }
        // Its certificate: the Secret cert-manager fills for its role, mounted where tlsDir points.
        const role = deployment.metadata.labels["app.kubernetes.io/component"] as MeshRole;
        const mount = container.volumeMounts.find((volumeMount: any) => volumeMount.mountPath === config.tlsDir);
        assert.ok(mount, `${where}: tlsDir ${config.tlsDir} is a mounted volume`);
        const volume = deployment.spec.template.spec.volumes.find((candidate: any) => candidate.name === mount.name);
        assert.equal(volume.secret.secretName, `infermesh-${role}-tls`, `${where}: mounts its own role's certificate`);
        mounted.set(role, volume.secret.secretName);
        for (const service of services) {
          for (const servicePort of service.spec.ports) {
            assert.ok(containerPorts.has(servicePort.targetPort), `${file}: Service port ${servicePort.name} targets a container port`);
          }
        }
      }
    }
  }
  assert.deepEqual([...withFile].sort(), Object.keys(reloadable).sort(), "every service that reloads reads a ConfigMap's file");
  assert.deepEqual([...deployments].sort(), [
    "infermesh-admission",
    "infermesh-gateway",
    "infermesh-memory-guard",
    "infermesh-router",
    "infermesh-worker",
  ]);
  // cert-manager issues each mounted Secret with the SPIFFE identity of its role.
  const certificates = parseAllDocuments(readFileSync(join(directory, "mesh-pki.yaml"), "utf8"))
    .map((document) => document.toJS())
    .filter((document) => document.kind === "Certificate" && !document.spec.isCA);
  for (const [role, secretName] of mounted) {
    const certificate = certificates.find((candidate) => candidate.spec.secretName === secretName);
    assert.ok(certificate, `a Certificate fills ${secretName}`);
    assert.deepEqual(certificate.spec.uris, [spiffeId(defaultTrustDomain, role)]);
    assert.ok(certificate.spec.usages.includes("server auth") && certificate.spec.usages.includes("client auth"));
    assert.equal(certificate.spec.issuerRef.name, "infermesh-mesh-ca");
  }
});

test("each internal service's NetworkPolicy admits to its gRPC port exactly the components ARCHITECTURE §9 lets call it", () => {
  const policies = parseAllDocuments(readFileSync(join(root, "deploy/k8s/base/network-policies.yaml"), "utf8")).map((document) =>
    document.toJS(),
  );
  // Every service also serves its part of a bug report (DebugService).
  const rules: Record<string, Record<string, readonly MeshRole[]>> = {
    admission: { ...admissionRules, ...debugRules },
    router: { ...routerRules, ...debugRules },
    "memory-guard": { ...memoryGuardRules, ...debugRules },
    worker: { ...workerRules, ...debugRules },
  };
  for (const [role, methods] of Object.entries(rules)) {
    const policy = policies.find((candidate) => candidate.spec.podSelector.matchLabels["app.kubernetes.io/component"] === role);
    assert.ok(policy, `a NetworkPolicy selects the ${role}`);
    assert.deepEqual(policy.spec.policyTypes, ["Ingress"]);
    const grpcRule = policy.spec.ingress.find((rule: any) => rule.ports.some((port: any) => port.port === "grpc"));
    const admitted = grpcRule.from.map((peer: any) => peer.podSelector.matchLabels["app.kubernetes.io/component"]).sort();
    // The operator is a person reaching a pod through kubectl port-forward, not a pod.
    const callers = [...new Set(Object.values(methods).flat())].filter((caller) => caller !== "operator").sort();
    assert.deepEqual(admitted, callers, `${role}: admitted components`);
    for (const rule of policy.spec.ingress) assert.ok(rule.from?.length > 0, `${role}: no ingress rule is open to everyone`);
  }
});

/** The manifests kubectl kustomize renders for an overlay; undefined (the test skipped) without kubectl. */
function render(context: { skip(message: string): void }, overlay: string): any[] | undefined {
  let rendered: string;
  try {
    rendered = execFileSync("kubectl", ["kustomize", join(root, "deploy/k8s/overlays", overlay)], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      context.skip("kubectl is not installed");
      return undefined;
    }
    throw error;
  }
  return parseAllDocuments(rendered).map((document) => document.toJS());
}

/** The kubernetes-models class of a manifest's apiVersion and kind: the Kubernetes OpenAPI schema, compiled. */
async function modelOf(apiVersion: string, kind: string): Promise<{ new (data: unknown): { validate(): void } }> {
  const [group, version] = apiVersion.includes("/") ? (apiVersion.split("/") as [string, string]) : ["", apiVersion];
  const module = group.endsWith("cert-manager.io")
    ? `@kubernetes-models/cert-manager/${group}/${version}/${kind}`
    : group === "monitoring.coreos.com"
      ? `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`
      : `kubernetes-models/${group === "" ? "" : `${group}/`}${version}/${kind}`;
  return (await import(module))[kind];
}

const controlPlane = ["infermesh-router", "infermesh-admission", "infermesh-memory-guard"];

for (const [overlay, minimumReplicas] of [
  ["local", 2],
  ["production", 3],
] as const) {
  test(`kubectl kustomize renders overlays/${overlay}, and every manifest is valid against the Kubernetes schemas`, async (context) => {
    const manifests = render(context, overlay);
    if (!manifests) return;
    for (const manifest of manifests) {
      const Model = await modelOf(manifest.apiVersion, manifest.kind);
      try {
        new Model(manifest).validate();
      } catch (error) {
        assert.fail(`${manifest.kind}/${manifest.metadata.name}: ${(error as Error).message}`);
      }
    }
    const named = (kind: string) => manifests.filter((manifest) => manifest.kind === kind);
    assert.equal(named("Deployment").length, 5);
    assert.equal(named("Certificate").length, 7);
    // No single point of failure: the control plane runs several replicas, spread over
    // nodes, each kept up through drains by a PodDisruptionBudget and found by clients
    // through a headless Service.
    for (const name of controlPlane) {
      const deployment = named("Deployment").find((candidate) => candidate.metadata.name === name);
      assert.ok(deployment.spec.replicas >= minimumReplicas, `${name}: ${deployment.spec.replicas} replicas`);
      const labels = deployment.spec.template.metadata.labels;
      const selects = (selector: Record<string, string>) => Object.entries(selector).every(([key, value]) => labels[key] === value);
      const spread = deployment.spec.template.spec.topologySpreadConstraints;
      assert.ok(
        spread.some(
          (constraint: any) => constraint.topologyKey === "kubernetes.io/hostname" && selects(constraint.labelSelector.matchLabels),
        ),
      );
      const budget = named("PodDisruptionBudget").find((candidate) => selects(candidate.spec.selector.matchLabels));
      assert.ok(budget, `${name}: a PodDisruptionBudget`);
      assert.ok(budget.spec.maxUnavailable < deployment.spec.replicas, `${name}: a drain leaves a replica`);
      const headless = named("Service").find((candidate) => candidate.spec.clusterIP === "None" && selects(candidate.spec.selector));
      assert.ok(headless, `${name}: a headless Service`);
    }
    if (overlay === "production")
      assert.equal(
        named("Deployment").find((d) => d.metadata.name === "infermesh-router").spec.template.spec.topologySpreadConstraints[0]
          .whenUnsatisfiable,
        "DoNotSchedule",
      );
    // Every dns:/// address a container is given is a headless Service of this render.
    const headlessNames = new Set(
      named("Service")
        .filter((service) => service.spec.clusterIP === "None")
        .map((service) => service.metadata.name),
    );
    const containers = [...named("Deployment"), ...named("StatefulSet")].flatMap((workload) => workload.spec.template.spec.containers);
    for (const entry of containers.flatMap((container: any) => container.env ?? [])) {
      for (const address of String(entry.value ?? "")
        .split(",")
        .filter((value) => value.startsWith("dns:///"))) {
        assert.ok(headlessNames.has(address.slice("dns:///".length).split(":")[0]!), `${entry.name}: ${address} is a headless Service`);
      }
    }
    // The autoscalers scale Deployments that exist.
    for (const autoscaler of named("HorizontalPodAutoscaler")) {
      assert.ok(named("Deployment").some((deployment) => deployment.metadata.name === autoscaler.spec.scaleTargetRef.name));
    }
    // The Redis URL's Secret: made by the local overlay; production expects the operator's (documented there).
    const secretRefs = containers.flatMap((container: any) => container.env ?? []).filter((entry: any) => entry.valueFrom?.secretKeyRef);
    assert.ok(secretRefs.length >= 2, "admission and the routers read the Redis URL from a Secret");
    if (overlay === "local") {
      for (const entry of secretRefs) {
        assert.ok(
          named("Secret").some((secret) => secret.metadata.name === entry.valueFrom.secretKeyRef.name),
          `${entry.name}: its Secret is rendered`,
        );
      }
      assert.equal(named("StatefulSet")[0]?.metadata.name, "infermesh-redis");
    }
  });
}

test("every metric an autoscaler names is one prometheus-adapter makes from a metric the workers export", async () => {
  const autoscaling = parseAllDocuments(readFileSync(join(root, "deploy/k8s/base/autoscaling.yaml"), "utf8")).map((document) =>
    document.toJS(),
  );
  const adapter = parseAllDocuments(readFileSync(join(root, "deploy/k8s/prometheus-adapter/rules.yaml"), "utf8"))[0]!.toJS();
  const registry = new Registry();
  exportEngineMetrics(registry, () => undefined, "worker-0");
  const exported = new Set((await registry.getMetricsAsJSON()).map((metric) => metric.name));
  const served = new Map<string, string>();
  for (const rule of adapter.rules.custom) {
    const series = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{/.exec(rule.seriesQuery)![1]!;
    assert.ok(exported.has(series), `the adapter reads ${series}, which a worker exports`);
    assert.ok(new RegExp(rule.name.matches).test(series));
    served.set(rule.name.as, series);
  }
  const worker = autoscaling.find((document) => document.spec.scaleTargetRef.name === "infermesh-worker");
  const named = worker.spec.metrics.filter((metric: any) => metric.type === "Pods").map((metric: any) => metric.pods.metric.name);
  assert.ok(named.length >= 2);
  for (const name of named) assert.ok(served.has(name), `${name} is a custom metric the adapter serves`);
  const gateway = autoscaling.find((document) => document.spec.scaleTargetRef.name === "infermesh-gateway");
  assert.equal(gateway.spec.metrics[0].resource.name, "cpu");
});

test("every Compose service passes settings it accepts, holds its certificate from the pki volume, and Prometheus scrapes their metrics ports", () => {
  const compose = parseAllDocuments(readFileSync(join(root, "deploy/compose/compose.yaml"), "utf8"))[0]!.toJS() as any;
  const metricsTargets = new Set<string>();
  const pki = compose.services.pki;
  assert.deepEqual(pki.command, ["dist/services/launcher/pki.js"]);
  const pkiDir = pki.environment.INFERMESH_PKI_DIR;
  assert.ok(pki.volumes.includes(`pki:${pkiDir}`), "the pki service writes its directory into the pki volume");
  for (const [name, service] of Object.entries<any>(compose.services)) {
    if (!String(service.image).startsWith("infermesh") || name === "pki") continue;
    const script = service.command[0];
    const env = Object.fromEntries(Object.entries(service.environment).map(([key, value]) => [key, String(value)]));
    const config = checkSettings(`compose/${name}`, script, env);
    const role = name.replace(/-\d+$/, "");
    assert.equal(config.tlsDir, `${pkiDir}/${role}`, `compose/${name}: holds its own role's certificate`);
    assert.ok(service.volumes.includes(`pki:${pkiDir}:ro`), `compose/${name}: mounts the pki volume read-only`);
    metricsTargets.add(`${name}:${config.metricsPort ?? config.port}`);
  }
  const prometheus = parseAllDocuments(readFileSync(join(root, "deploy/prometheus/prometheus.yml"), "utf8"))[0]!.toJS() as any;
  const scraped = new Set(prometheus.scrape_configs.flatMap((job: any) => job.static_configs.flatMap((entry: any) => entry.targets)));
  assert.deepEqual([...scraped].sort(), [...metricsTargets].sort());
});

/**
 * promtool, from Debian's `prometheus` package: `.ci/run` installs it and sets
 * INFERMESH_REQUIRE_PROMTOOL, so CI never skips these; elsewhere they skip, saying why.
 */
function promtool(t: { skip(message: string): void }, ...args: string[]): string | undefined {
  try {
    return execFileSync("promtool", args, { cwd: join(root, "deploy/prometheus"), encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === "ENOENT";
    if (missing && process.env.INFERMESH_REQUIRE_PROMTOOL !== "1") {
      t.skip("promtool is not installed (apt-get install prometheus)");
      return undefined;
    }
    const failed = error as { stdout?: string; stderr?: string };
    assert.fail(`promtool ${args.join(" ")} failed:\n${failed.stdout ?? ""}${failed.stderr ?? (error as Error).message}`);
  }
}

test("the alert rules are valid, and each alert's unit test fires it on a broken SLO and keeps it quiet on a kept one", (t) => {
  const checked = promtool(t, "check", "rules", "alerts.yml");
  if (checked === undefined) return;
  assert.match(checked, /SUCCESS: 14 rules found/);
  assert.match(promtool(t, "check", "config", "prometheus.yml") ?? "", /SUCCESS: 1 rule files found/);
  assert.match(promtool(t, "test", "rules", "alerts.test.yml") ?? "", /SUCCESS/);
});

test("the Grafana dashboard is its builder's output, and every query in it is valid PromQL", (t) => {
  const committed = readFileSync(join(root, "deploy/grafana/infermesh.json"), "utf8");
  // Compared as JSON: the file is formatted by Biome like every other.
  assert.deepEqual(
    JSON.parse(committed),
    JSON.parse(dashboardJson()),
    "deploy/grafana/infermesh.json differs from its builder: run npm run dashboards",
  );
  const queries = dashboardQueries(JSON.parse(committed));
  assert.ok(queries.length >= 15);
  // Grafana's variables as a query would have them, then promtool parses each as a rule.
  const concrete = queries.map((query) =>
    query.replaceAll("$__rate_interval", "1m").replaceAll("$__range", "1h").replaceAll("$model", ".*"),
  );
  const directory = mkdtempSync(join(tmpdir(), "dashboard-queries-"));
  const file = join(directory, "queries.yml");
  writeFileSync(
    file,
    stringify({ groups: [{ name: "dashboard", rules: concrete.map((expr, index) => ({ record: `dashboard:query${index}`, expr })) }] }),
  );
  const checked = promtool(t, "check", "rules", file);
  if (checked !== undefined) assert.match(checked, new RegExp(`SUCCESS: ${queries.length} rules found`));
});

test("the Collector keeps every erred and slow trace and a 3 % share of the rest, whole, before batching", () => {
  const [config] = parseAllDocuments(readFileSync(join(root, "deploy/otel/collector.yaml"), "utf8")).map((document) => document.toJS());
  const pipeline = config.service.pipelines.traces;
  assert.deepEqual(pipeline.processors, ["tail_sampling", "batch"]);
  const policies = config.processors.tail_sampling.policies as { type: string; [key: string]: any }[];
  assert.deepEqual(
    policies.map((policy) => policy.type),
    ["status_code", "latency", "probabilistic"],
  );
  assert.deepEqual(policies[0]!.status_code.status_codes, ["ERROR"]);
  assert.equal(policies[2]!.probabilistic.sampling_percentage, 3);
});

test("the cluster's PrometheusRule is deploy/prometheus/alerts.yml, and the PodMonitor scrapes ports every infermesh pod names", async () => {
  const committed = readFileSync(join(root, "deploy/k8s/monitoring.yaml"), "utf8");
  assert.equal(committed, monitoringManifests(), "deploy/k8s/monitoring.yaml differs from alerts.yml: run npm run monitoring");
  const [podMonitor, rule] = parseAllDocuments(committed).map((document) => document.toJS());
  for (const manifest of [podMonitor, rule]) {
    const Model = await modelOf(manifest.apiVersion, manifest.kind);
    new Model(manifest).validate();
  }
  assert.equal(rule.kind, "PrometheusRule");
  assert.deepEqual(rule.spec.groups, parseAllDocuments(readFileSync(join(root, "deploy/prometheus/alerts.yml"), "utf8"))[0]!.toJS().groups);
  const scraped = new Set((podMonitor.spec.podMetricsEndpoints as { port: string }[]).map((endpoint) => endpoint.port));
  // Every Deployment's pod is selected, and names a port the PodMonitor scrapes.
  for (const file of ["gateway", "admission", "router", "memory-guard", "worker"]) {
    for (const document of parseAllDocuments(readFileSync(join(root, `deploy/k8s/base/${file}.yaml`), "utf8")).map((d) => d.toJS())) {
      if (document?.kind !== "Deployment" && document?.kind !== "StatefulSet") continue;
      const pod = document.spec.template;
      for (const [key, value] of Object.entries(podMonitor.spec.selector.matchLabels))
        assert.equal(pod.metadata.labels[key], value, `${file} selected`);
      const ports = (pod.spec.containers as { ports?: { name: string }[] }[])
        .flatMap((container) => container.ports ?? [])
        .map((port) => port.name);
      assert.ok(
        ports.some((port) => scraped.has(port)),
        `${file}'s pod serves metrics on a scraped port (${ports.join(", ")})`,
      );
    }
  }
});
