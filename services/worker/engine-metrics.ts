import { Counter, Gauge, type Registry } from "prom-client";
import type { Engine, EngineLoad } from "./engines/engine.js";

/**
 * Exports the engine's load under vLLM's metric names where they mean the same thing,
 * so dashboards built for vLLM work on infermesh workers. Reads whichever engine the
 * worker serves at scrape time; with none (unloaded), the gauges are absent.
 */
export function exportEngineMetrics(registry: Registry, currentEngine: () => Engine | undefined, workerId: string): void {
  const labelNames = ["worker_id", "engine", "model_id"];
  const labelsOf = (engine: Engine) => ({ worker_id: workerId, engine: engine.kind, model_id: engine.models()[0]?.id ?? "" });
  const gauge = (name: string, help: string, read: (load: EngineLoad) => number) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        const engine = currentEngine();
        if (engine) this.set(labelsOf(engine), read(engine.load()));
      },
    });
  gauge("vllm:num_requests_running", "Requests decoding now", (load) => load.runningRequests);
  gauge("vllm:num_requests_waiting", "Requests waiting for a sequence", (load) => load.waitingRequests);
  gauge("vllm:kv_cache_usage_perc", "KV-cache usage, 0 to 1", (load) =>
    load.kvTotalTokens === 0 ? 0 : load.kvUsedTokens / load.kvTotalTokens,
  );
  // Cumulative figures the engine keeps, exported as counters by their growth.
  const counter = (name: string, help: string, read: (load: EngineLoad) => number) => {
    // Growth since the last scrape, per engine: a new engine starts from zero.
    let counted: { engine: Engine; exported: number } | undefined;
    return new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        const engine = currentEngine();
        if (!engine) return;
        if (counted?.engine !== engine) counted = { engine, exported: 0 };
        const now = read(engine.load());
        if (now > counted.exported) this.inc(labelsOf(engine), now - counted.exported);
        counted.exported = Math.max(counted.exported, now);
      },
    });
  };
  counter("vllm:prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache", (load) => load.prefixCacheQueries);
  counter("vllm:prefix_cache_hits_total", "Prompt tokens found in the prefix cache", (load) => load.prefixCacheHits);
  // The seeds' labels where they are true: one series per served model, joined to the
  // request series by model_id (model_name in vLLM's), not multiplied into each of them.
  new Gauge({
    name: "infermesh_worker_model_info",
    help: "The model a worker serves: its engine, size (from its id, e.g. 20b) and GPU mode (the device kind: cpu, cuda, …); always 1",
    labelNames: ["worker_id", "model_id", "engine", "model_size", "gpu_mode"],
    registers: [registry],
    collect() {
      this.reset();
      const engine = currentEngine();
      if (!engine) return;
      const gpuMode = engine.device.split(":")[0] ?? "";
      for (const model of engine.models()) {
        this.set({ worker_id: workerId, model_id: model.id, engine: engine.kind, model_size: modelSizeOf(model.id), gpu_mode: gpuMode }, 1);
      }
    },
  });
  gauge("infermesh_worker_kv_used_tokens", "KV cells in use", (load) => load.kvUsedTokens);
  gauge("infermesh_worker_kv_total_tokens", "KV cells in all", (load) => load.kvTotalTokens);
  gauge("infermesh_worker_tokens_per_second", "Generated tokens per second, 5 s window", (load) => load.tokensPerSecond);
}

/** A model's size as its id names it ("gpt-oss-120b" → "120b"), or "" when it names none. */
export const modelSizeOf = (modelId: string) => /(?:^|[^a-z0-9.])(\d+(?:\.\d+)?[bm])(?![a-z0-9])/i.exec(modelId)?.[1]?.toLowerCase() ?? "";
