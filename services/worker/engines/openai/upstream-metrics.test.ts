import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import test from "node:test";
import { repoRoot } from "../../../common/paths.js";
import { parsePrometheusText } from "./prometheus-text.js";
import { detectFlavor, readFigures, type UpstreamFigures } from "./upstream-metrics.js";

/** A recorded /metrics sample from test/fixtures/upstream-metrics (sources in each file's header). */
function fixture(name: string): string {
  return readFileSync(resolve(repoRoot(), "test/fixtures/upstream-metrics", name), "utf8");
}

function figuresOf(name: string): { flavor: string | undefined; figures: UpstreamFigures } {
  const scrape = parsePrometheusText(fixture(name));
  const flavor = detectFlavor(scrape);
  assert.ok(flavor, `${name}: no engine detected`);
  return { flavor, figures: readFigures(flavor, scrape) };
}

test("vLLM 0.10 (V1 names): requests, KV from cache_config_info, prefix-cache counters, generation counter", () => {
  const { flavor, figures } = figuresOf("vllm.txt");
  assert.equal(flavor, "vllm");
  assert.deepEqual(figures, {
    runningRequests: 1,
    waitingRequests: 0,
    // kv_cache_usage_perc 9.75e-06 of 102563 blocks × 16 tokens: one block.
    kvUsedTokens: 16,
    kvTotalTokens: 102_563 * 16,
    // The *_created timestamps beside the counters (1.75e9) must not be read as counts.
    prefixCacheQueries: 32,
    prefixCacheHits: 0,
    generationTokens: 57,
    generationThroughput: undefined,
  });
});

test("vLLM V0 names: gpu_cache_usage_perc and no prefix-cache counters", () => {
  const { flavor, figures } = figuresOf("vllm-v0.txt");
  assert.equal(flavor, "vllm");
  assert.equal(figures.kvTotalTokens, 81_767 * 16);
  assert.equal(figures.kvUsedTokens, 0);
  assert.equal(figures.runningRequests, 0);
  assert.equal(figures.prefixCacheQueries, undefined);
  assert.equal(figures.generationTokens, 955);
});

test("SGLang: running/queued requests, KV capacity derived from used tokens and token_usage, estimated cache hits", () => {
  const { flavor, figures } = figuresOf("sglang.txt");
  assert.equal(flavor, "sglang");
  assert.deepEqual(figures, {
    runningRequests: 162,
    waitingRequests: 2826,
    kvUsedTokens: 123_859,
    kvTotalTokens: 442_354, // 123859 / 0.28
    prefixCacheQueries: 8_128_902,
    prefixCacheHits: 61_028, // cache_hit_rate 0.0075 × prompt tokens
    generationTokens: 7_557_572,
    generationThroughput: 86.50814177726902,
  });
});

test("TRT-LLM: trtllm_ gauges, KV blocks × tokens per block, cached prompt tokens", () => {
  const { flavor, figures } = figuresOf("trtllm.txt");
  assert.equal(flavor, "trtllm");
  assert.deepEqual(figures, {
    runningRequests: 12,
    waitingRequests: 3,
    kvUsedTokens: 1530 * 32,
    kvTotalTokens: 4096 * 32,
    prefixCacheQueries: 183_472,
    prefixCacheHits: 91_520,
    generationTokens: 45_210,
    generationThroughput: undefined,
  });
});

test("llama-server: processing and deferred requests, predicted-token counter, no KV figures", () => {
  const { flavor, figures } = figuresOf("llamacpp.txt");
  assert.equal(flavor, "llamacpp");
  assert.deepEqual(figures, {
    runningRequests: 2,
    waitingRequests: 1,
    kvUsedTokens: undefined,
    kvTotalTokens: undefined,
    prefixCacheQueries: undefined,
    prefixCacheHits: undefined,
    generationTokens: 3469,
    generationThroughput: undefined,
  });
});

test("vLLM data-parallel engines add up; kv_cache_size_tokens wins over blocks × block size", () => {
  const scrape = parsePrometheusText(
    [
      'vllm:num_requests_running{engine="0",model_name="m"} 3.0',
      'vllm:num_requests_running{engine="1",model_name="m"} 4.0',
      'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5',
      'vllm:cache_config_info{block_size="1568",engine="0",kv_cache_size_tokens="66901",num_gpu_blocks="49"} 1.0',
      'vllm:prefix_cache_queries_total{engine="0",model_name="m"} 100',
      'vllm:prefix_cache_queries_total{engine="1",model_name="m"} 50',
      'vllm:prefix_cache_hits_total{engine="0",model_name="m"} 70',
      'vllm:prefix_cache_hits_created{engine="0",model_name="m"} 1.7e9',
    ].join("\n"),
  );
  const figures = readFigures("vllm", scrape);
  assert.equal(figures.runningRequests, 7);
  assert.equal(figures.kvTotalTokens, 66_901);
  assert.equal(figures.kvUsedTokens, 33_451);
  assert.equal(figures.prefixCacheQueries, 150);
  assert.equal(figures.prefixCacheHits, 70);
});

test("SGLang ranks: tensor-parallel repeats count once, data-parallel ranks add up; counters beat estimates", () => {
  const rank = (dp: number, tp: number) => `dp_rank="${dp}",engine_type="unified",model_name="q",tp_rank="${tp}"`;
  const lines: string[] = [];
  for (const dp of [0, 1]) {
    for (const tp of [0, 1]) {
      lines.push(`sglang:num_running_reqs{${rank(dp, tp)}} ${dp === 0 ? 5 : 7}`);
      lines.push(`sglang:max_total_num_tokens{${rank(dp, tp)}} 262144`);
      lines.push(`sglang:num_used_tokens{${rank(dp, tp)}} ${dp === 0 ? 1000 : 3000}`);
    }
  }
  lines.push('sglang:prompt_tokens_total{model_name="q"} 10000');
  lines.push('sglang:cached_tokens_total{cache_source="device",model_name="q"} 4000');
  lines.push('sglang:cached_tokens_total{cache_source="host",model_name="q"} 500');
  lines.push('sglang:cache_hit_rate{model_name="q"} 0.9');
  const figures = readFigures("sglang", parsePrometheusText(lines.join("\n")));
  assert.equal(figures.runningRequests, 12);
  assert.equal(figures.kvTotalTokens, 2 * 262_144);
  assert.equal(figures.kvUsedTokens, 4000);
  assert.equal(figures.prefixCacheQueries, 10_000);
  assert.equal(figures.prefixCacheHits, 4500);
});

test("detection picks the engine whose prefix dominates and ignores foreign metrics", () => {
  assert.equal(detectFlavor(parsePrometheusText("python_gc_objects_collected_total 1\nprocess_open_fds 4")), undefined);
  assert.equal(detectFlavor(parsePrometheusText("vllm:a 1\nvllm:b 2\nsglang:c 3")), "vllm");
  assert.equal(detectFlavor(parsePrometheusText("trtllm_num_requests_running 1")), "trtllm");
});
