import type { PrometheusSample, PrometheusScrape } from "./prometheus-text.js";
import type { UpstreamFlavor } from "./options.js";

/** An engine whose metric names this engine knows. */
export type KnownFlavor = Exclude<UpstreamFlavor, "auto">;

/** What one scrape of an upstream's /metrics says; undefined where the engine exposes nothing. */
export interface UpstreamFigures {
  readonly runningRequests: number | undefined;
  readonly waitingRequests: number | undefined;
  readonly kvUsedTokens: number | undefined;
  readonly kvTotalTokens: number | undefined;
  /** Cumulative prompt tokens looked up in the prefix cache. */
  readonly prefixCacheQueries: number | undefined;
  /** Cumulative prompt tokens found there. */
  readonly prefixCacheHits: number | undefined;
  /** Cumulative generated tokens (a counter; its rate is the throughput). */
  readonly generationTokens: number | undefined;
  /** Generated tokens per second when the engine reports the rate itself (SGLang). */
  readonly generationThroughput: number | undefined;
}

const prefixes: readonly [string, KnownFlavor][] = [
  ["vllm:", "vllm"],
  ["sglang:", "sglang"],
  ["trtllm_", "trtllm"],
  ["llamacpp:", "llamacpp"],
];

/** The engine whose metric prefix most samples carry; undefined when none does. */
export function detectFlavor(scrape: PrometheusScrape): KnownFlavor | undefined {
  const counts = new Map<KnownFlavor, number>();
  for (const sample of scrape.samples) {
    for (const [prefix, flavor] of prefixes) {
      if (sample.name.startsWith(prefix)) counts.set(flavor, (counts.get(flavor) ?? 0) + 1);
    }
  }
  let best: KnownFlavor | undefined;
  for (const [flavor, count] of counts) if (best === undefined || count > counts.get(best)!) best = flavor;
  return best;
}

/**
 * Labels whose values name separate parts of the engine whose figures add up: vLLM's
 * data-parallel `engine`, SGLang's `dp_rank`, SGLang's `cache_source` and TRT-LLM's
 * `cache_level`. Series that differ only in other labels (SGLang's `tp_rank`, which
 * every tensor-parallel rank repeats) report the same figure, so their maximum is kept.
 */
const additiveLabels = ["engine", "dp_rank", "cache_source", "cache_level", "cache_tier"];

/** Sum over parts, maximum over repeats; undefined when the metric is absent or not finite. */
export function aggregate(samples: readonly PrometheusSample[], name: string): number | undefined {
  const parts = new Map<string, number>();
  for (const sample of samples) {
    if (sample.name !== name || !Number.isFinite(sample.value)) continue;
    const key = additiveLabels.map((label) => sample.labels[label] ?? "").join("\u0000");
    parts.set(key, Math.max(parts.get(key) ?? Number.NEGATIVE_INFINITY, sample.value));
  }
  if (parts.size === 0) return undefined;
  let total = 0;
  for (const value of parts.values()) total += value;
  return total;
}

/** Reads the figures of one engine from a scrape. */
export function readFigures(flavor: KnownFlavor, scrape: PrometheusScrape): UpstreamFigures {
  const samples = scrape.samples;
  const value = (name: string) => aggregate(samples, name);
  switch (flavor) {
    case "vllm":
      return vllmFigures(samples, value);
    case "sglang":
      return sglangFigures(value);
    case "trtllm":
      return trtllmFigures(value);
    case "llamacpp":
      return llamacppFigures(value);
  }
}

type Read = (name: string) => number | undefined;

/**
 * vLLM (v1 engine names first, the older v0 ones as fallback). KV capacity comes from
 * the labels of the `vllm:cache_config_info` info gauge: `kv_cache_size_tokens` where
 * newer versions list it (hybrid models' blocks are not all full-size), else
 * `num_gpu_blocks` × `block_size`, summed over data-parallel engines.
 */
function vllmFigures(samples: readonly PrometheusSample[], value: Read): UpstreamFigures {
  let kvTotalTokens: number | undefined;
  const perEngine = new Map<string, number>();
  for (const sample of samples) {
    if (sample.name !== "vllm:cache_config_info") continue;
    const sizeTokens = Number(sample.labels.kv_cache_size_tokens);
    const blocks = Number(sample.labels.num_gpu_blocks);
    const blockSize = Number(sample.labels.block_size);
    const tokens = sizeTokens > 0 ? sizeTokens : blocks > 0 && blockSize > 0 ? blocks * blockSize : undefined;
    if (tokens !== undefined) perEngine.set(sample.labels.engine ?? "", tokens);
  }
  if (perEngine.size > 0) kvTotalTokens = [...perEngine.values()].reduce((sum, tokens) => sum + tokens, 0);
  const kvUsage = value("vllm:kv_cache_usage_perc") ?? value("vllm:gpu_cache_usage_perc");
  return {
    runningRequests: value("vllm:num_requests_running"),
    waitingRequests: value("vllm:num_requests_waiting"),
    kvUsedTokens: kvUsage !== undefined && kvTotalTokens !== undefined ? Math.round(kvUsage * kvTotalTokens) : undefined,
    kvTotalTokens,
    prefixCacheQueries: value("vllm:prefix_cache_queries_total") ?? value("vllm:gpu_prefix_cache_queries_total"),
    prefixCacheHits: value("vllm:prefix_cache_hits_total") ?? value("vllm:gpu_prefix_cache_hits_total"),
    generationTokens: value("vllm:generation_tokens_total"),
    generationThroughput: undefined,
  };
}

/**
 * SGLang. Capacity is `sglang:max_total_num_tokens` where exposed; older versions only
 * give `num_used_tokens` and the `token_usage` ratio, whose quotient estimates it.
 * Prefix-cache hits come from the `sglang:cached_tokens_total` counter; versions without
 * it get an estimate from the `cache_hit_rate` gauge (a recent-window rate) times the
 * prompt-token counter.
 */
function sglangFigures(value: Read): UpstreamFigures {
  const used = value("sglang:num_used_tokens");
  const usage = value("sglang:token_usage");
  let total = value("sglang:max_total_num_tokens");
  if (total === undefined && used !== undefined && usage !== undefined && usage > 0) total = Math.round(used / usage);
  const kvUsedTokens = used ?? (usage !== undefined && total !== undefined ? Math.round(usage * total) : undefined);
  const promptTokens = value("sglang:prompt_tokens_total");
  const hitRate = value("sglang:cache_hit_rate");
  const cachedTokens =
    value("sglang:cached_tokens_total") ??
    (promptTokens !== undefined && hitRate !== undefined ? Math.round(promptTokens * Math.min(1, Math.max(0, hitRate))) : undefined);
  return {
    runningRequests: value("sglang:num_running_reqs"),
    waitingRequests: value("sglang:num_queue_reqs"),
    kvUsedTokens,
    kvTotalTokens: total,
    prefixCacheQueries: cachedTokens === undefined ? undefined : promptTokens,
    prefixCacheHits: promptTokens === undefined ? undefined : cachedTokens,
    generationTokens: value("sglang:generation_tokens_total"),
    generationThroughput: value("sglang:gen_throughput"),
  };
}

/**
 * trtllm-serve's Prometheus endpoint (/prometheus/metrics; its /metrics answers JSON
 * iteration stats). Iteration gauges need `enable_iter_perf_stats`, token counters
 * `return_perf_metrics` in its LLM options.
 */
function trtllmFigures(value: Read): UpstreamFigures {
  const maxBlocks = value("trtllm_kv_cache_max_blocks");
  const usedBlocks = value("trtllm_kv_cache_used_blocks");
  const tokensPerBlock = value("trtllm_kv_cache_tokens_per_block");
  const utilization = value("trtllm_kv_cache_utilization");
  const kvTotalTokens = maxBlocks !== undefined && tokensPerBlock !== undefined ? maxBlocks * tokensPerBlock : undefined;
  const kvUsedTokens =
    usedBlocks !== undefined && tokensPerBlock !== undefined
      ? usedBlocks * tokensPerBlock
      : utilization !== undefined && kvTotalTokens !== undefined
        ? Math.round(utilization * kvTotalTokens)
        : undefined;
  const hits = value("trtllm_prompt_cached_tokens_total");
  const queries = value("trtllm_prompt_tokens_total");
  return {
    runningRequests: value("trtllm_num_requests_running"),
    waitingRequests: value("trtllm_num_requests_waiting"),
    kvUsedTokens,
    kvTotalTokens,
    prefixCacheQueries: hits === undefined ? undefined : queries,
    prefixCacheHits: queries === undefined ? undefined : hits,
    generationTokens: value("trtllm_generation_tokens_total"),
    generationThroughput: undefined,
  };
}

/**
 * llama-server (started with --metrics). It reports busy and deferred requests and token
 * counters; the KV gauges `kv_cache_tokens` / `kv_cache_usage_ratio` exist only in builds
 * before ggml-org/llama.cpp#13660, and there is no prefix-cache hit counter.
 */
function llamacppFigures(value: Read): UpstreamFigures {
  const kvTokens = value("llamacpp:kv_cache_tokens");
  const kvRatio = value("llamacpp:kv_cache_usage_ratio");
  return {
    runningRequests: value("llamacpp:requests_processing"),
    waitingRequests: value("llamacpp:requests_deferred"),
    kvUsedTokens: kvTokens,
    kvTotalTokens: kvTokens !== undefined && kvRatio !== undefined && kvRatio > 0 ? Math.round(kvTokens / kvRatio) : undefined,
    prefixCacheQueries: undefined,
    prefixCacheHits: undefined,
    generationTokens: value("llamacpp:tokens_predicted_total"),
    generationThroughput: undefined,
  };
}
