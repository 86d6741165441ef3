import { type Context, type Span, SpanStatusCode, trace as traceApi } from "@opentelemetry/api";
import { exemplarOf } from "../../services/common/telemetry/tracing.js";
import type { Status } from "nice-grpc";
import type { Histogram, LabelValues } from "prom-client";
import type { Usage } from "../../gen/infermesh/common/v1/common.js";
import type { PickResponse } from "../../gen/infermesh/router/v1/router_service.js";
import type { DecisionEvents } from "../../services/common/decision-events.js";
import { classOf } from "../../services/common/priority-classes.js";
import type { Resolution, ResolvedGeneration } from "../flow/request.js";
import type { GenerationEvent } from "../mesh/generation.js";
import { ApiError, toApiError } from "../errors.js";
import { sumUsage } from "../translate/choices.js";
import { RecentRequests } from "./recent-requests.js";
import { finishReasonText } from "../translate/openai.js";
import { type Api, type Outcome, outcomeOf, outcomeOfHttpStatus, type RequestLabels, type RequestMetrics } from "./request-metrics.js";

/** Starts the observation of each request; built once in main. */
export class RequestObserver {
  /** The last requests that ended, for the debug bundle. */
  readonly recent = new RecentRequests();

  /** `events` writes each request's access event (at the gateway's accessLog level). */
  constructor(
    readonly metrics: RequestMetrics,
    private readonly events: DecisionEvents,
  ) {}

  /** Observes a request from now (its arrival); `trace` is its own span's context (when tracing). */
  start(api: Api, requestId: string, trace: Context | undefined): RequestObservation {
    return new RequestObservation(this.metrics, this.events, this.recent, api, requestId, trace);
  }
}

/**
 * One request as an operator sees it: its series in the gateway's metrics (labelled by
 * API, served model, profile and class, with the trace id as exemplar) and one access
 * event when it ends, with its timings, tokens, worker and outcome. Never its prompt
 * or output.
 */
export class RequestObservation {
  private readonly arrivedAt = performance.now();
  private readonly labels: RequestLabels;
  private readonly traceId: string | undefined;
  /** The request's own span (HTTP or gRPC server), which its attributes and status go on. */
  private readonly span: Span | undefined;
  /** The trace id as an exemplar, when the trace is sampled (an exemplar must lead to a stored trace). */
  private readonly exemplar: Record<string, string> | undefined;
  private tenant = "";
  private firstTokenAt: number | undefined;
  private lastTokenAt: number | undefined;
  private queueMs: number | undefined;
  private worker = "";
  private pickReason = "";
  private retries = 0;
  private usage: Usage | undefined;
  private failure: unknown;
  private ended = false;
  private readonly finishReasons: string[] = [];

  constructor(
    private readonly metrics: RequestMetrics,
    private readonly events: DecisionEvents,
    private readonly recent: RecentRequests,
    api: Api,
    readonly requestId: string,
    /** The context of the request's span: the parent of the calls made for it. */
    readonly trace: Context | undefined,
  ) {
    this.labels = { api, model: "", profile: "", priority_class: "" };
    this.span = trace && traceApi.getSpan(trace);
    this.traceId = this.span?.spanContext().traceId;
    this.exemplar = exemplarOf(this.span);
    this.span?.setAttributes({ "infermesh.request_id": requestId, "infermesh.api": api });
  }

  /** What a generation asks, in OpenTelemetry's GenAI attributes. */
  generation(request: ResolvedGeneration): void {
    const { sampling } = request.values;
    this.span?.setAttributes({
      "gen_ai.operation.name": request.operation,
      "gen_ai.request.model": request.model,
      "gen_ai.request.max_tokens": sampling.maxTokens,
      ...(sampling.temperature !== undefined ? { "gen_ai.request.temperature": sampling.temperature } : {}),
      ...(sampling.topP !== undefined ? { "gen_ai.request.top_p": sampling.topP } : {}),
      ...(sampling.n !== undefined && sampling.n > 1 ? { "gen_ai.request.choice.count": sampling.n } : {}),
    });
  }

  /** An embeddings request, in OpenTelemetry's GenAI attributes. */
  embedding(request: Resolution): void {
    this.span?.setAttributes({ "gen_ai.operation.name": "embeddings", "gen_ai.request.model": request.model });
  }

  /** The id the response carries (chatcmpl-…, resp_…). */
  responseId(id: string): void {
    this.span?.setAttribute("gen_ai.response.id", id);
  }

  /** The request's key, profile and class are known. */
  resolved(resolution: Resolution): void {
    this.tenant = resolution.caller.tenantId;
    this.labels.profile = resolution.profile;
    this.labels.priority_class = classOf(resolution.caller.priorityClass) ?? "";
    this.span?.setAttributes({
      "gen_ai.provider.name": "infermesh",
      "infermesh.profile": resolution.profile,
      "infermesh.priority_class": this.labels.priority_class,
    });
  }

  /** A worker serves the model: from here on it labels the request (an unknown model would make a series per typo). */
  served(model: string): void {
    this.labels.model = model;
  }

  /** Admission granted the request after `queuedMs`, and the router picked. */
  admitted(pick: PickResponse): void {
    this.queueMs = performance.now() - this.arrivedAt;
    this.pickReason = pick.reason;
    this.span?.setAttribute("infermesh.pick_reason", pick.reason);
    this.observe(this.metrics.queueSeconds, this.queueMs / 1000);
  }

  /** An embeddings request's worker counted its inputs' tokens. */
  embedded(promptTokens: number): void {
    this.usage = { promptTokens, completionTokens: 0, cachedTokens: 0, reasoningTokens: 0 };
  }

  /** The request moved to the next worker after one failed before its first token. */
  retried(): void {
    this.retries += 1;
    this.metrics.retries.inc({ api: this.labels.api, model: this.labels.model });
    this.span?.setAttribute("infermesh.retries", this.retries);
  }

  /** One event of the request's generation, as its caller reads it. */
  event(event: GenerationEvent): void {
    switch (event.$case) {
      case "started":
        this.worker = event.value.workerId;
        if (event.value.model) this.labels.model = event.value.model;
        this.span?.setAttributes({ "gen_ai.response.model": this.labels.model, "infermesh.worker_id": this.worker });
        break;
      case "delta": {
        const now = performance.now();
        if (this.firstTokenAt === undefined) {
          this.firstTokenAt = now;
          this.observe(this.metrics.timeToFirstTokenSeconds, (now - this.arrivedAt) / 1000);
        } else if (event.value.tokenCount > 0) {
          this.observe(this.metrics.interTokenSeconds, (now - this.lastTokenAt!) / 1000 / event.value.tokenCount);
        }
        this.lastTokenAt = now;
        break;
      }
      case "finished":
        this.finishReasons.push(finishReasonText(event.value.finishReason));
        // Several prompts of one completions request each finish: their usage adds up.
        this.usage = sumUsage([this.usage, event.value.usage]);
        // Before the response ends: the server span ends with it.
        this.span?.setAttributes({
          "gen_ai.response.finish_reasons": this.finishReasons,
          "gen_ai.usage.input_tokens": this.usage?.promptTokens ?? 0,
          "gen_ai.usage.output_tokens": this.usage?.completionTokens ?? 0,
          "gen_ai.usage.cache_read.input_tokens": this.usage?.cachedTokens ?? 0,
          "infermesh.usage.reasoning_tokens": this.usage?.reasoningTokens ?? 0,
        });
        break;
      case "error":
        this.fail(new ApiError(event.value.statusCode as Status, event.value.message));
        break;
      case "choiceEnd":
        break;
    }
  }

  /**
   * The request failed; the first failure is its outcome. A failure of the mesh (a
   * timeout, shedding, an upstream error, a stream that ended in an error event after a
   * 200) makes its span ERROR with `error.type`; the caller's own (4xx) only sets
   * `error.type`. Noted now, before the response ends the server span.
   */
  fail(error: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    const outcome = outcomeOf(error);
    if (outcome === "cancelled") return;
    this.span?.setAttribute("error.type", outcome);
    if (outcome === "timeout" || outcome === "shed" || outcome === "upstream_error") {
      this.span?.setStatus({ code: SpanStatusCode.ERROR, message: toApiError(error).message });
    }
  }

  /**
   * The request ended: with its HTTP status, or, over gRPC, as its failure says. A
   * caller gone before the end is `cancelled`. Counted and logged once.
   */
  end(how: { readonly httpStatus?: number; readonly callerLeft?: boolean } = {}): void {
    if (this.ended) return;
    this.ended = true;
    const outcome: Outcome =
      this.failure !== undefined
        ? outcomeOf(this.failure)
        : how.callerLeft
          ? "cancelled"
          : how.httpStatus !== undefined
            ? outcomeOfHttpStatus(how.httpStatus)
            : "ok";
    const e2eMs = performance.now() - this.arrivedAt;
    this.metrics.requests.inc({ ...this.labels, outcome });
    this.observe(this.metrics.e2eSeconds, e2eMs / 1000, outcome);
    if (this.usage) {
      this.metrics.promptTokens.observe(this.labels, this.usage.promptTokens);
      this.metrics.generationTokens.observe(this.labels, this.usage.completionTokens);
    }
    this.events("request", this.accessEvent(outcome, e2eMs, how.httpStatus));
    this.recent.add({
      at: new Date().toISOString(),
      request_id: this.requestId,
      trace_id: this.traceId,
      api: this.labels.api,
      model: this.labels.model,
      outcome,
      e2e_ms: round(e2eMs),
      ...(this.failure !== undefined ? { error: toApiError(this.failure).message } : {}),
    });
  }

  private accessEvent(outcome: Outcome, e2eMs: number, httpStatus: number | undefined) {
    const generatingMs = this.firstTokenAt !== undefined && this.lastTokenAt !== undefined ? this.lastTokenAt - this.firstTokenAt : 0;
    const completion = this.usage?.completionTokens ?? 0;
    return {
      request_id: this.requestId,
      ...(this.traceId ? { trace_id: this.traceId } : {}),
      tenant: this.tenant,
      ...this.labels,
      outcome,
      ...(httpStatus !== undefined ? { status: httpStatus } : {}),
      ...(this.failure !== undefined ? { error: toApiError(this.failure).message } : {}),
      e2e_ms: round(e2eMs),
      ...(this.queueMs !== undefined ? { queue_ms: round(this.queueMs) } : {}),
      ...(this.firstTokenAt !== undefined ? { ttft_ms: round(this.firstTokenAt - this.arrivedAt) } : {}),
      ...(completion > 1 && generatingMs > 0 ? { tokens_per_s: round(((completion - 1) * 1000) / generatingMs) } : {}),
      prompt_tokens: this.usage?.promptTokens ?? 0,
      completion_tokens: completion,
      cached_tokens: this.usage?.cachedTokens ?? 0,
      reasoning_tokens: this.usage?.reasoningTokens ?? 0,
      retries: this.retries,
      worker: this.worker,
      pick_reason: this.pickReason,
    };
  }

  private observe<Labels extends string>(histogram: Histogram<Labels>, value: number, outcome?: Outcome): void {
    const labels = (outcome === undefined ? this.labels : { ...this.labels, outcome }) as LabelValues<Labels>;
    // A histogram with exemplars takes only this form; without a sampled trace it keeps none.
    histogram.observe({ labels, value, exemplarLabels: (this.exemplar ?? {}) as LabelValues<Labels> });
  }
}

const round = (value: number) => Math.round(value * 10) / 10;
