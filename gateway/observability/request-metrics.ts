import { Status } from "nice-grpc";
import { Counter, Histogram, type Registry } from "prom-client";
import { ApiError, toApiError } from "../errors.js";

/** The APIs a request comes through: a metrics label. */
export type Api = "chat" | "completions" | "responses" | "embeddings" | "grpc";

/** How a request ended: a closed set, so an error rate is a ratio of two counters. */
export const outcomes = ["ok", "client_error", "rate_limited", "shed", "timeout", "upstream_error", "cancelled"] as const;
export type Outcome = (typeof outcomes)[number];

/** The outcome of a request that failed with `error`. */
export function outcomeOf(error: unknown): Outcome {
  const apiError = error instanceof ApiError ? error : toApiError(error);
  switch (apiError.status) {
    case Status.CANCELLED:
      return "cancelled";
    case Status.DEADLINE_EXCEEDED:
      return "timeout";
    case Status.RESOURCE_EXHAUSTED:
      return "rate_limited";
    case Status.UNAVAILABLE:
      // Admission refusing for capacity is shedding; anything else unavailable is the mesh's fault.
      return apiError.details.code === "server_overloaded" ? "shed" : "upstream_error";
    case Status.INVALID_ARGUMENT:
    case Status.NOT_FOUND:
    case Status.UNAUTHENTICATED:
    case Status.PERMISSION_DENIED:
    case Status.FAILED_PRECONDITION:
    case Status.OUT_OF_RANGE:
    case Status.ALREADY_EXISTS:
      return "client_error";
    default:
      return "upstream_error";
  }
}

/** The outcome of an HTTP status, for a request whose failure was not seen. */
export function outcomeOfHttpStatus(status: number): Outcome {
  if (status < 400) return "ok";
  if (status === 429) return "rate_limited";
  if (status === 499) return "cancelled";
  if (status === 504) return "timeout";
  return status < 500 ? "client_error" : "upstream_error";
}

/** The labels every request series has: few values each (no request or tenant ids). */
const requestLabels = ["api", "model", "profile", "priority_class"] as const;
export type RequestLabels = Record<(typeof requestLabels)[number], string>;

const latencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320];
const tokenBuckets = [1, 4, 16, 64, 256, 1_024, 4_096, 16_384, 65_536, 262_144];

/** The gateway's request metrics. Latency histograms carry the trace id as an exemplar (OpenMetrics scrapes). */
export class RequestMetrics {
  readonly requests: Counter<(typeof requestLabels)[number] | "outcome">;
  readonly e2eSeconds: Histogram<(typeof requestLabels)[number] | "outcome">;
  readonly timeToFirstTokenSeconds: Histogram<(typeof requestLabels)[number]>;
  readonly interTokenSeconds: Histogram<(typeof requestLabels)[number]>;
  readonly queueSeconds: Histogram<(typeof requestLabels)[number]>;
  readonly promptTokens: Histogram<(typeof requestLabels)[number]>;
  readonly generationTokens: Histogram<(typeof requestLabels)[number]>;
  readonly retries: Counter<"api" | "model">;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({
      name: "infermesh_gateway_requests_total",
      help: "Requests by API, served model, profile, priority class and outcome",
      labelNames: [...requestLabels, "outcome"],
      registers,
    });
    this.e2eSeconds = new Histogram({
      name: "infermesh_gateway_e2e_request_latency_seconds",
      help: "Time from a request's arrival to its last byte, by outcome",
      labelNames: [...requestLabels, "outcome"],
      buckets: latencyBuckets,
      enableExemplars: true,
      registers,
    });
    this.timeToFirstTokenSeconds = new Histogram({
      name: "infermesh_gateway_time_to_first_token_seconds",
      help: "Time from a request's arrival to its first generated token",
      labelNames: requestLabels,
      buckets: latencyBuckets,
      enableExemplars: true,
      registers,
    });
    this.interTokenSeconds = new Histogram({
      name: "infermesh_gateway_inter_token_latency_seconds",
      help: "Time between a request's output tokens (each delta's gap over the tokens it carries)",
      labelNames: requestLabels,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5],
      enableExemplars: true,
      registers,
    });
    this.queueSeconds = new Histogram({
      name: "infermesh_gateway_queue_seconds",
      help: "Time from a request's arrival to its admission grant",
      labelNames: requestLabels,
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60],
      enableExemplars: true,
      registers,
    });
    this.promptTokens = new Histogram({
      name: "infermesh_gateway_prompt_tokens",
      help: "Prompt tokens of a request, as the worker counted them",
      labelNames: requestLabels,
      buckets: tokenBuckets,
      registers,
    });
    this.generationTokens = new Histogram({
      name: "infermesh_gateway_generation_tokens",
      help: "Tokens a request generated",
      labelNames: requestLabels,
      buckets: tokenBuckets,
      registers,
    });
    this.retries = new Counter({
      name: "infermesh_gateway_retries_total",
      help: "Requests moved to another worker after one failed before its first token",
      labelNames: ["api", "model"],
      registers,
    });
  }
}
