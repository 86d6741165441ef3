import type { Logger } from "../../../common/logger.js";
import type { Clock } from "../../../common/clock.js";
import type { UpstreamFlavor } from "./options.js";
import { parsePrometheusText, type PrometheusScrape } from "./prometheus-text.js";
import type { UpstreamClient } from "./upstream-client.js";
import { detectFlavor, readFigures, type KnownFlavor, type UpstreamFigures } from "./upstream-metrics.js";

export interface LoadPollerDeps {
  readonly client: UpstreamClient;
  /** Prometheus URLs to try in order until one answers with metrics of a known engine. */
  readonly candidateUrls: readonly string[];
  readonly flavor: UpstreamFlavor;
  readonly intervalMs: number;
  readonly clock: Clock;
  /** Tokens this engine has streamed so far; the throughput source when the upstream exposes no counter. */
  readonly streamedTokens: () => number;
  /** Called after a poll that changed the figures. */
  readonly onChange: () => void;
  readonly logger?: Logger;
}

/** The upstream's load as last read. */
export interface PolledLoad {
  readonly flavor: KnownFlavor | undefined;
  readonly figures: UpstreamFigures | undefined;
  readonly tokensPerSecond: number;
}

/** Reads the upstream's Prometheus endpoint every `intervalMs` until stopped. */
export class LoadPoller {
  private flavor: KnownFlavor | undefined;
  private metricsUrl: string | undefined;
  private figures: UpstreamFigures | undefined;
  private tokensPerSecond = 0;
  private lastCount: { atMs: number; tokens: number; upstream: boolean } | undefined;
  private timer: { cancel(): void } | undefined;
  private stopped = false;
  private warnedUnavailable = false;
  private readonly abort = new AbortController();

  constructor(private readonly deps: LoadPollerDeps) {
    this.flavor = deps.flavor === "auto" ? undefined : deps.flavor;
  }

  current(): PolledLoad {
    return { flavor: this.flavor, figures: this.figures, tokensPerSecond: this.tokensPerSecond };
  }

  /** Polls now, then every interval. */
  async start(): Promise<void> {
    await this.poll();
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.abort.abort();
  }

  /** One poll; never throws (a failed poll keeps the last figures). */
  async poll(): Promise<void> {
    const before = JSON.stringify(this.current());
    const scrape = await this.scrape();
    if (this.stopped) return;
    if (scrape && this.flavor) this.figures = readFigures(this.flavor, scrape);
    this.updateThroughput();
    if (JSON.stringify(this.current()) !== before) this.deps.onChange();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.deps.clock.setTimer(() => {
      void this.poll().finally(() => this.schedule());
    }, this.deps.intervalMs);
  }

  private async scrape(): Promise<PrometheusScrape | undefined> {
    const urls = this.metricsUrl === undefined ? this.deps.candidateUrls : [this.metricsUrl];
    let lastProblem = "";
    for (const url of urls) {
      try {
        const answer = await this.deps.client.text(url, this.abort.signal);
        if (answer.status !== 200) {
          lastProblem = `HTTP ${answer.status}`;
          continue;
        }
        const scrape = parsePrometheusText(answer.text);
        const flavor = this.flavor ?? detectFlavor(scrape);
        if (flavor === undefined) {
          lastProblem = "no vllm:, sglang:, trtllm_ or llamacpp: metrics";
          continue;
        }
        if (this.metricsUrl === undefined) this.deps.logger?.info({ metricsUrl: url, flavor }, "reading upstream load from its metrics");
        this.metricsUrl = url;
        this.flavor = flavor;
        this.warnedUnavailable = false;
        return scrape;
      } catch (error) {
        if (this.stopped) return undefined;
        lastProblem = error instanceof Error ? error.message : String(error);
      }
    }
    if (!this.warnedUnavailable) {
      this.warnedUnavailable = true;
      this.deps.logger?.warn(
        { problem: this.deps.client.redact(lastProblem) },
        "upstream metrics unavailable; load reports only the requests this worker has open",
      );
    }
    return undefined;
  }

  /** Rate of the generated-token counter between polls; the upstream's own rate gauge before there are two. */
  private updateThroughput(): void {
    const upstreamCounter = this.figures?.generationTokens;
    const tokens = upstreamCounter ?? this.deps.streamedTokens();
    const upstream = upstreamCounter !== undefined;
    const atMs = this.deps.clock.now();
    const previous = this.lastCount;
    this.lastCount = { atMs, tokens, upstream };
    if (previous === undefined || previous.upstream !== upstream || atMs <= previous.atMs) {
      this.tokensPerSecond = this.figures?.generationThroughput ?? 0;
      return;
    }
    const added = tokens - previous.tokens;
    // A counter that went down means the upstream restarted: no rate for this interval.
    this.tokensPerSecond = added < 0 ? 0 : (added * 1000) / (atMs - previous.atMs);
  }
}
