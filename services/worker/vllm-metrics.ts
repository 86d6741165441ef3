import type { Span } from "@opentelemetry/api";
import { exemplarOf } from "../common/telemetry/tracing.js";
import { Counter, Histogram, type Registry } from "prom-client";
import { FinishReason } from "../../gen/infermesh/common/v1/common.js";

/**
 * The worker's request metrics under vLLM's own names and label (`model_name`), so
 * dashboards made for vLLM read an infermesh worker, whatever its engine. Latency
 * histograms carry the trace id as an exemplar (OpenMetrics scrapes). vLLM's buckets.
 */
export class VllmMetrics {
  readonly timeToFirstToken: Histogram<"model_name">;
  readonly interTokenLatency: Histogram<"model_name">;
  readonly e2eLatency: Histogram<"model_name">;
  readonly queueTime: Histogram<"model_name">;
  readonly promptTokens: Counter<"model_name">;
  readonly generationTokens: Counter<"model_name">;
  readonly requestSuccess: Counter<"model_name" | "finished_reason">;

  constructor(registry: Registry) {
    const registers = [registry];
    const labelNames = ["model_name"] as const;
    const requestSeconds = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];
    this.timeToFirstToken = new Histogram({
      name: "vllm:time_to_first_token_seconds",
      help: "Histogram of time to first token in seconds.",
      labelNames,
      buckets: [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560],
      enableExemplars: true,
      registers,
    });
    this.interTokenLatency = new Histogram({
      name: "vllm:inter_token_latency_seconds",
      help: "Histogram of inter-token latency in seconds.",
      labelNames,
      buckets: [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80],
      enableExemplars: true,
      registers,
    });
    this.e2eLatency = new Histogram({
      name: "vllm:e2e_request_latency_seconds",
      help: "Histogram of e2e request latency in seconds.",
      labelNames,
      buckets: requestSeconds,
      enableExemplars: true,
      registers,
    });
    this.queueTime = new Histogram({
      name: "vllm:request_queue_time_seconds",
      help: "Histogram of time spent in WAITING phase for request.",
      labelNames,
      buckets: requestSeconds,
      enableExemplars: true,
      registers,
    });
    this.promptTokens = new Counter({
      name: "vllm:prompt_tokens_total",
      help: "Number of prefill tokens processed.",
      labelNames,
      registers,
    });
    this.generationTokens = new Counter({
      name: "vllm:generation_tokens_total",
      help: "Number of generation tokens processed.",
      labelNames,
      registers,
    });
    this.requestSuccess = new Counter({
      name: "vllm:request_success_total",
      help: "Count of successfully processed requests.",
      labelNames: ["model_name", "finished_reason"],
      registers,
    });
  }

  /** Starts timing one Generate call, now, in the active trace. */
  track(model: string, span: Span | undefined): GenerationTiming {
    return new GenerationTiming(this, model, span);
  }
}

/** vLLM's finished_reason for ours: a cancelled generation was aborted. */
const finishedReason = (reason: FinishReason) =>
  reason === FinishReason.FINISH_REASON_LENGTH ? "length" : reason === FinishReason.FINISH_REASON_CANCELLED ? "abort" : "stop";

/** One Generate call's timings: queue (until the engine started it), first token, the gaps between tokens, the end. */
export class GenerationTiming {
  private readonly arrivedAt = performance.now();
  private readonly labels: { model_name: string };
  private readonly exemplar: { trace_id: string } | undefined;
  /** When each choice last produced tokens. */
  private readonly lastTokenAt: number[] = [];
  /** Time to first token in ms, once it came. */
  private firstTokenMs: number | undefined;
  private gapsMs = 0;
  private gapTokens = 0;

  constructor(
    private readonly metrics: VllmMetrics,
    model: string,
    /** The Generate call's span: a sampled one's trace id is the exemplar. */
    span: Span | undefined,
  ) {
    this.labels = { model_name: model };
    this.exemplar = exemplarOf(span);
  }

  started(promptTokens: number): void {
    this.observe(this.metrics.queueTime, (performance.now() - this.arrivedAt) / 1000);
    this.metrics.promptTokens.inc(this.labels, promptTokens);
  }

  tokens(choice: number, count: number): void {
    const now = performance.now();
    if (this.firstTokenMs === undefined) {
      this.firstTokenMs = now - this.arrivedAt;
      this.observe(this.metrics.timeToFirstToken, this.firstTokenMs / 1000);
    } else if (this.lastTokenAt[choice] !== undefined && count > 0) {
      const gapMs = now - this.lastTokenAt[choice];
      this.gapsMs += gapMs;
      this.gapTokens += count;
      this.observe(this.metrics.interTokenLatency, gapMs / 1000 / count);
    }
    this.lastTokenAt[choice] = now;
    if (count > 0) this.metrics.generationTokens.inc(this.labels, count);
  }

  finished(reason: FinishReason): void {
    this.observe(this.metrics.e2eLatency, (performance.now() - this.arrivedAt) / 1000);
    this.metrics.requestSuccess.inc({ ...this.labels, finished_reason: finishedReason(reason) });
  }

  /** This generation's time to first token and mean inter-token latency, in ms, where known. */
  latencies(): { timeToFirstTokenMs?: number; interTokenLatencyMs?: number } {
    return {
      timeToFirstTokenMs: this.firstTokenMs,
      interTokenLatencyMs: this.gapTokens > 0 ? this.gapsMs / this.gapTokens : undefined,
    };
  }

  private observe(histogram: Histogram<"model_name">, value: number): void {
    // A histogram with exemplars takes only this form; without a sampled trace it keeps none.
    histogram.observe({ labels: this.labels, value, exemplarLabels: (this.exemplar ?? {}) as never });
  }
}
