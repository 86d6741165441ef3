/**
 * What an operator sees of each request: the gateway's request series (API, served
 * model, profile, class, outcome), the workers' vLLM-named series, exemplars that lead
 * from a latency bucket to the request's trace, and one access event per request.
 * A sim worker, traced into an in-test OTLP receiver.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { extract } from "tar-stream";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { repoRoot } from "../../services/common/paths.js";
import { dashboardQueries } from "../../deploy/grafana/dashboard.js";
import { OtlpCollector, startTestMesh, type TestMesh, waitFor } from "../support/harness.js";

const model = "sim-gpt-oss-20b";
let collector: OtlpCollector;
let mesh: TestMesh;

before(async () => {
  collector = new OtlpCollector();
  await collector.start();
  // Real time (about 350 tokens a second) and a 2 s deadline: a long answer outlives it.
  mesh = await startTestMesh({
    otlpEndpoint: collector.endpoint,
    workerArgs: ["--engine", "sim", "--sim-time-scale", "1", "--sim-answer-tokens-min", "2000", "--sim-answer-tokens-max", "2000"],
    gatewayArgs: ["--request-timeout-ms", "2000", "--response-cache", "true"],
    // Decision events at info, where an operator asking "why" would turn them on.
    admissionArgs: ["--event-log", "info"],
    routerArgs: ["--event-log", "info"],
  });
});

after(async () => {
  await mesh?.stop();
  await collector?.stop();
});

const post = (path: string, body: object) =>
  fetch(`${mesh.baseUrl}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
const scrape = (url: string, accept?: string) =>
  fetch(url, { headers: accept ? { accept } : {} }).then(async (response) => ({
    type: response.headers.get("content-type") ?? "",
    lines: (await response.text()).split("\n"),
  }));
const workerMetrics = () => `http://127.0.0.1:${mesh.ports.workerMetricsBase}/metrics`;
/** A typed event of `service`'s log about a request. */
const eventOf = (service: string, type: string, requestId: string) =>
  mesh.logs
    .filter((line) => line.startsWith(`[${service}] {`))
    .map((line) => JSON.parse(line.slice(service.length + 3)) as Record<string, unknown>)
    .find((event) => event.event === type && event.request_id === requestId);
/** The access event of a request, from the gateway's log. */
const accessEvent = (requestId: string) => eventOf("gateway", "request", requestId);

test("a request is counted and timed by API, served model, profile, class and outcome; its exemplar names its trace; one access event tells its story", async () => {
  const response = await post("/v1/chat/completions", { model, messages: [{ role: "user", content: "Hi" }], max_tokens: 8, stream: true });
  assert.equal(response.status, 200);
  await response.text();
  const requestId = response.headers.get("x-request-id")!;
  const event = await waitFor("the access event", () => accessEvent(requestId));
  for (const [field, value] of Object.entries({
    api: "chat",
    model,
    profile: "balanced",
    priority_class: "standard",
    outcome: "ok",
    status: 200,
  })) {
    assert.equal(event[field], value, field);
  }
  assert.equal(event.tenant, "anonymous:");
  assert.equal(event.worker, "worker-0");
  assert.equal(typeof event.ttft_ms, "number");
  assert.equal(typeof event.e2e_ms, "number");
  assert.ok((event.completion_tokens as number) > 0 && (event.prompt_tokens as number) > 0);
  assert.ok(typeof event.pick_reason === "string" && event.pick_reason !== "");
  assert.ok(!JSON.stringify(event).includes("Hi"), "no prompt in the event");
  const traceId = event.trace_id as string;
  assert.match(traceId, /^[0-9a-f]{32}$/);
  // Where it was decided: admission's grant and the router's pick, with the same ids.
  const granted = await waitFor("admission's grant event", () => eventOf("admission", "admission.granted", requestId));
  assert.equal(granted.priority_class, "standard");
  assert.equal(granted.trace_id, traceId);
  const pick = await waitFor("the router's pick event", () => eventOf("router", "route.pick", requestId));
  assert.equal(pick.worker_id, "worker-0");
  assert.equal(pick.reason, event.pick_reason);

  const failed = await post("/v1/chat/completions", { model, messages: [], max_tokens: 8 });
  assert.equal(failed.status, 400);
  const unknown = await post("/v1/responses", { model: "no-such-model", input: "Hi" });
  assert.equal(unknown.status, 404);

  const plain = await scrape(`${mesh.baseUrl}/metrics`);
  assert.match(plain.type, /^text\/plain; version=0\.0\.4/);
  const series = (prefix: string) => plain.lines.filter((line) => line.startsWith(prefix));
  assert.deepEqual(
    series("infermesh_gateway_requests_total{").map((line) => line.replace(/,?service="gateway"/, "")),
    [
      `infermesh_gateway_requests_total{api="chat",model="${model}",profile="balanced",priority_class="standard",outcome="ok"} 1`,
      'infermesh_gateway_requests_total{api="chat",model="",profile="",priority_class="",outcome="client_error"} 1',
      'infermesh_gateway_requests_total{api="responses",model="",profile="balanced",priority_class="standard",outcome="client_error"} 1',
    ],
    "an unknown model labels nothing: a typo makes no series",
  );
  assert.ok(series("infermesh_gateway_e2e_request_latency_seconds_count{").length === 3);
  assert.ok(!plain.lines.some((line) => line.includes("trace_id")), "no exemplars in the text format");

  // An OpenMetrics scrape: the latency buckets carry the trace id, which leads to the request's spans.
  const open = await scrape(`${mesh.baseUrl}/metrics`, "application/openmetrics-text; version=1.0.0");
  assert.match(open.type, /^application\/openmetrics-text/);
  const exemplar = open.lines.find(
    (line) => line.startsWith("infermesh_gateway_time_to_first_token_seconds_bucket{") && line.includes("# {"),
  );
  assert.ok(exemplar?.includes(`trace_id="${traceId}"`), exemplar);
  await waitFor("the request's spans from the gateway and the worker", () => {
    const services = new Set(collector.spans.filter((span) => span.traceId === traceId).map((span) => span.service));
    return services.has("infermesh-gateway") && services.has("infermesh-worker");
  });

  // The worker: vLLM's names, its exemplars, and the model's info series.
  const worker = await scrape(workerMetrics(), "application/openmetrics-text");
  for (const name of [
    "vllm:time_to_first_token_seconds_count",
    "vllm:e2e_request_latency_seconds_count",
    "vllm:request_queue_time_seconds_count",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
  ]) {
    assert.ok(
      worker.lines.some((line) => line.startsWith(`${name}{`) && line.includes(`model_name="${model}"`)),
      name,
    );
  }
  assert.ok(worker.lines.some((line) => line.startsWith("vllm:request_success_total{") && line.includes('finished_reason="length"')));
  assert.ok(
    worker.lines.some((line) => line.startsWith("vllm:time_to_first_token_seconds_bucket{") && line.includes(`trace_id="${traceId}"`)),
  );
  assert.ok(
    worker.lines.some((line) =>
      /^infermesh_worker_model_info\{worker_id="worker-0",model_id="sim-gpt-oss-20b",engine="sim",model_size="20b",gpu_mode="[a-z]+"/.test(
        line,
      ),
    ),
  );
});

test("the request's span is named by route and carries the GenAI attributes; probes are not traced", async () => {
  await fetch(`${mesh.baseUrl}/readyz`);
  const response = await post("/v1/chat/completions", {
    model,
    messages: [{ role: "user", content: "Hi" }],
    max_tokens: 8,
    temperature: 0.5,
  });
  const body = (await response.json()) as { id: string };
  const requestId = response.headers.get("x-request-id")!;
  const root = await waitFor("the request's server span", () =>
    collector.spans.find((span) => span.service === "infermesh-gateway" && span.attributes["infermesh.request_id"] === requestId),
  );
  assert.equal(root.name, "POST /v1/chat/completions");
  assert.equal(root.parentSpanId, "");
  for (const [key, value] of Object.entries({
    "http.route": "/v1/chat/completions",
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "infermesh",
    "gen_ai.request.model": model,
    "gen_ai.response.model": model,
    "gen_ai.request.max_tokens": 8,
    "gen_ai.request.temperature": 0.5,
    "gen_ai.response.id": body.id,
    "infermesh.profile": "balanced",
    "infermesh.priority_class": "standard",
    "infermesh.worker_id": "worker-0",
  })) {
    assert.deepEqual(root.attributes[key], value, key);
  }
  assert.deepEqual(root.attributes["gen_ai.response.finish_reasons"], ["length"]);
  assert.equal(root.attributes["gen_ai.usage.output_tokens"], 8);
  assert.equal(typeof root.attributes["gen_ai.usage.cache_read.input_tokens"], "number");
  assert.ok(!collector.spans.some((span) => /readyz|healthz|metrics/.test(span.name)), "no probe traced");
});

test("a stream cut by the deadline after its first token: outcome timeout, its span ERROR with error.type, every process's spans exported", async () => {
  const response = await post("/v1/chat/completions", {
    model,
    messages: [{ role: "user", content: "Tell me a story" }],
    max_tokens: 2_000,
    stream: true,
  });
  assert.equal(response.status, 200);
  const text = await response.text();
  assert.match(text, /"code":"timeout"/, "the stream ends with the timeout error event");
  const requestId = response.headers.get("x-request-id")!;
  const event = await waitFor("the access event", () => accessEvent(requestId));
  assert.equal(event.outcome, "timeout");
  const root = await waitFor("the request's server span", () =>
    collector.spans.find((span) => span.service === "infermesh-gateway" && span.attributes["infermesh.request_id"] === requestId),
  );
  assert.equal(root.statusCode, 2, "ERROR");
  assert.equal(root.attributes["error.type"], "timeout");
  await waitFor("the worker's span of the cut generation", () =>
    collector.spans.some((span) => span.traceId === root.traceId && span.service === "infermesh-worker"),
  );
});

test("every metric the alert rules and the dashboard query is one a live mesh exports", async () => {
  const rules = readFileSync(join(repoRoot(), "deploy/prometheus/alerts.yml"), "utf8");
  const dashboard = dashboardQueries(JSON.parse(readFileSync(join(repoRoot(), "deploy/grafana/infermesh.json"), "utf8"))).join("\n");
  const queried = new Set([...`${rules}\n${dashboard}`.matchAll(/\b(infermesh_[a-z0-9_]+|vllm:[a-z0-9_:]+)/g)].map((match) => match[1]!));
  const { ports } = mesh;
  const exported = new Set<string>();
  for (const url of [
    `${mesh.baseUrl}/metrics`,
    ...[ports.admissionMetrics, ports.routerMetrics, ports.memoryGuardMetrics, ports.workerMetricsBase].map(
      (port) => `http://127.0.0.1:${port}/metrics`,
    ),
  ]) {
    for (const line of (await scrape(url)).lines) {
      const family = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (!family) continue;
      exported.add(family[1]!);
      if (family[2] === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) exported.add(`${family[1]}${suffix}`);
    }
  }
  assert.ok(queried.size >= 6);
  // Exported only in the shared mode (--redis-url), which this mesh does not run:
  // control-plane-replicas.test.ts checks them on a mesh that does.
  const sharedModeOnly = new Set(["infermesh_redis_up"]);
  assert.deepEqual(
    [...queried].filter((name) => !exported.has(name) && !sharedModeOnly.has(name)),
    [],
  );
});

/** The files of a .tar.gz, by name. */
async function untar(archive: Buffer): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const reader = extract();
  reader.end(gunzipSync(archive));
  for await (const entry of reader) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    files.set(entry.header.name, Buffer.concat(chunks).toString("utf8"));
  }
  return files;
}

test("GET /debug/bundle: one archive with every service's versions, redacted config, metrics and errors, the fleet, and the slow and failed requests' trace ids", async () => {
  const response = await fetch(`${mesh.baseUrl}/debug/bundle`);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "application/gzip");
  assert.match(response.headers.get("content-disposition") ?? "", /attachment; filename="infermesh-debug-.*\.tar\.gz"/);
  const files = await untar(Buffer.from(await response.arrayBuffer()));
  const file = (name: string) => {
    const content = files.get(`infermesh-debug/${name}`);
    assert.ok(content !== undefined, `${name} is in the bundle (has ${[...files.keys()].join(", ")})`);
    return content;
  };
  assert.deepEqual(JSON.parse(file("problems.json")), [], "every part was gathered");
  const versions = JSON.parse(file("versions.json")) as Record<string, { infermesh: string; node: string; engine?: string }>;
  assert.deepEqual(Object.keys(versions).sort(), ["admission", "gateway", "memory-guard", "router", "workers/worker-0"]);
  assert.equal(versions["workers/worker-0"]!.engine, "sim");
  assert.equal(versions.gateway!.node, process.version);
  for (const service of ["gateway", "admission", "router", "memory-guard", "workers/worker-0"]) {
    assert.ok(JSON.parse(file(`${service}/config.json`)).tlsDir, `${service}'s effective config`);
    assert.ok(Array.isArray(JSON.parse(file(`${service}/errors.json`))));
  }
  assert.match(file("gateway/metrics.txt"), /^infermesh_gateway_requests_total\{/m);
  assert.match(file("workers/worker-0/metrics.txt"), /^vllm:generation_tokens_total\{/m);
  assert.equal((JSON.parse(file("router/fleet.json")) as { workers: unknown[] }).workers.length, 1);
  const stats = JSON.parse(file("admission/stats.json")) as { capacity: number; grantedTotal: string };
  assert.ok(stats.capacity > 0 && Number(stats.grantedTotal) > 0);
  // The request cut by its deadline (an earlier test) is among the failed, with its trace id.
  const failed = JSON.parse(file("requests/failed.json")) as { outcome: string; trace_id?: string }[];
  const timeout = failed.find((request) => request.outcome === "timeout");
  assert.match(timeout?.trace_id ?? "", /^[0-9a-f]{32}$/);
  assert.equal((JSON.parse(file("requests/slowest.json")) as { trace_id?: string }[])[0]?.trace_id, timeout?.trace_id, "and the slowest");
  assert.ok(![...files.values()].some((content) => content.includes("Tell me a story")), "no prompt in the bundle");
});
