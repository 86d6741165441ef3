import assert from "node:assert/strict";
import { Writable } from "node:stream";
import test from "node:test";
import { Status } from "nice-grpc";
import { pino } from "pino";
import { decisionEvents } from "../../services/common/decision-events.js";
import type { MetricValue, Registry } from "prom-client";
import { createMetricsRegistry } from "../../services/common/metrics.js";
import { FinishReason, PriorityClass } from "../../gen/infermesh/common/v1/common.js";
import { ApiError } from "../errors.js";
import type { Resolution } from "../flow/request.js";
import type { GenerationEvent } from "../mesh/generation.js";
import { outcomeOf, RequestMetrics } from "./request-metrics.js";
import { RequestObserver } from "./request-observation.js";

function observer(level: "info" | "off" = "info") {
  const registry = createMetricsRegistry("gateway");
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { registry, lines, observer: new RequestObserver(new RequestMetrics(registry), decisionEvents(pino(sink), level)) };
}

const resolution = {
  requestId: "r1",
  model: "m",
  alternativeModels: [],
  profile: "latency_first",
  caller: { tenantId: "acme", priorityClass: PriorityClass.PRIORITY_CLASS_INTERACTIVE, limits: undefined },
  identity: undefined,
  sessionId: "",
} satisfies Resolution;

const delta = (tokenCount: number): GenerationEvent => ({
  $case: "delta",
  value: { text: "x", tokenCount, index: 0, reasoningText: "", logprobs: [], toolCalls: [] },
});

/** A metric's samples, with the sample's own name (histograms: _bucket, _sum, _count). */
const sample = async (registry: Registry, name: string) =>
  (await registry.getSingleMetric(name)!.get()).values as (MetricValue<string> & { metricName?: string })[];

test("a served request: counted by API, model, profile, class and outcome, timed, and one access event with its figures", async () => {
  const { registry, lines, observer: start } = observer();
  const observation = start.start("chat", "r1", undefined);
  observation.resolved(resolution);
  observation.served("m");
  observation.admitted({ candidates: [], reason: "least-loaded" });
  observation.event({ $case: "started", value: { workerId: "worker-0", model: "m", promptTokens: 12, cachedTokens: 8 } });
  observation.event(delta(1));
  observation.event(delta(3));
  observation.event({
    $case: "finished",
    value: {
      finishReason: FinishReason.FINISH_REASON_STOP,
      usage: { promptTokens: 12, completionTokens: 4, cachedTokens: 8, reasoningTokens: 0 },
    },
  });
  observation.end({ httpStatus: 200 });
  observation.end({ httpStatus: 200 });

  const labels = { api: "chat", model: "m", profile: "latency_first", priority_class: "interactive" };
  assert.deepEqual(
    (await sample(registry, "infermesh_gateway_requests_total")).map((value) => [value.labels, value.value]),
    [[{ ...labels, outcome: "ok" }, 1]],
    "counted once",
  );
  const ttft = (await sample(registry, "infermesh_gateway_time_to_first_token_seconds")).find((value) =>
    value.metricName?.endsWith("_count"),
  );
  assert.deepEqual(ttft?.labels, labels);
  assert.equal(ttft?.value, 1);
  const itl = (await sample(registry, "infermesh_gateway_inter_token_latency_seconds")).find((value) =>
    value.metricName?.endsWith("_count"),
  );
  assert.equal(itl?.value, 1, "one gap after the first token");
  const generated = (await sample(registry, "infermesh_gateway_generation_tokens")).find((value) => value.metricName?.endsWith("_sum"));
  assert.equal(generated?.value, 4);

  assert.equal(lines.length, 1);
  const [event] = lines;
  assert.equal(event!.msg, "request");
  assert.equal(event!.event, "request");
  for (const [field, value] of Object.entries({
    request_id: "r1",
    tenant: "acme",
    api: "chat",
    model: "m",
    profile: "latency_first",
    priority_class: "interactive",
    outcome: "ok",
    status: 200,
    prompt_tokens: 12,
    completion_tokens: 4,
    cached_tokens: 8,
    worker: "worker-0",
    pick_reason: "least-loaded",
    retries: 0,
  })) {
    assert.equal(event![field], value, field);
  }
  for (const field of ["e2e_ms", "ttft_ms", "queue_ms", "tokens_per_s"]) assert.equal(typeof event![field], "number", field);
});

test("outcomes: a failure's kind wins over the status; a caller that left is cancelled; an unserved model labels nothing", async () => {
  const { registry, lines, observer: start } = observer("off");
  const shed = start.start("responses", "a", undefined);
  shed.fail(new ApiError(Status.UNAVAILABLE, "busy", { code: "server_overloaded" }));
  shed.end({ httpStatus: 503 });
  const gone = start.start("chat", "b", undefined);
  gone.end({ httpStatus: 200, callerLeft: true });
  const typo = start.start("chat", "c", undefined);
  typo.fail(new ApiError(Status.NOT_FOUND, "no such model"));
  typo.end({ httpStatus: 404 });
  const outcomes = (await sample(registry, "infermesh_gateway_requests_total")).map((value) => [
    value.labels.api,
    value.labels.model,
    value.labels.outcome,
  ]);
  assert.deepEqual(outcomes, [
    ["responses", "", "shed"],
    ["chat", "", "cancelled"],
    ["chat", "", "client_error"],
  ]);
  assert.equal(lines.length, 0, "access events off");
});

test("outcomeOf classifies every status into the closed set", () => {
  const of = (status: Status, code?: string) => outcomeOf(new ApiError(status, "x", { code }));
  assert.equal(of(Status.RESOURCE_EXHAUSTED), "rate_limited");
  assert.equal(of(Status.UNAVAILABLE, "server_overloaded"), "shed");
  assert.equal(of(Status.UNAVAILABLE), "upstream_error");
  assert.equal(of(Status.DEADLINE_EXCEEDED), "timeout");
  assert.equal(of(Status.CANCELLED), "cancelled");
  assert.equal(of(Status.INVALID_ARGUMENT), "client_error");
  assert.equal(of(Status.INTERNAL), "upstream_error");
});
