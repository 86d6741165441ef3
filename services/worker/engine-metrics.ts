import { Counter, Gauge, type Registry } from "prom-client";
import type { Engine } from "./engines/engine.js";

/**
 * Exports the engine's load under vLLM's metric names where they mean the same thing,
 * so dashboards built for vLLM work on infermesh workers.
 */
export function exportEngineMetrics(registry: Registry, engine: Engine, workerId: string): void {
  const labels = { worker_id: workerId, engine: engine.kind, model_id: engine.models()[0]?.id ?? "" };
  const labelNames = Object.keys(labels);
  const gauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.set(labels, read());
      },
    });
  gauge("vllm:num_requests_running", "Requests decoding now", () => engine.load().runningRequests);
  gauge("vllm:num_requests_waiting", "Requests waiting for a sequence", () => engine.load().waitingRequests);
  gauge("vllm:kv_cache_usage_perc", "KV-cache usage, 0 to 1", () => {
    const load = engine.load();
    return load.kvTotalTokens === 0 ? 0 : load.kvUsedTokens / load.kvTotalTokens;
  });
  // Cumulative figures the engine keeps, exported as counters by their growth.
  const counter = (name: string, help: string, read: () => number) => {
    let exported = 0;
    return new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        const now = read();
        if (now > exported) this.inc(labels, now - exported);
        exported = Math.max(exported, now);
      },
    });
  };
  counter("vllm:prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache", () => engine.load().prefixCacheQueries);
  counter("vllm:prefix_cache_hits_total", "Prompt tokens found in the prefix cache", () => engine.load().prefixCacheHits);
  gauge("infermesh_worker_kv_used_tokens", "KV cells in use", () => engine.load().kvUsedTokens);
  gauge("infermesh_worker_kv_total_tokens", "KV cells in all", () => engine.load().kvTotalTokens);
  gauge("infermesh_worker_tokens_per_second", "Generated tokens per second, 5 s window", () => engine.load().tokensPerSecond);
}
