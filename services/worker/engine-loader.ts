import { resolve } from "node:path";
import type { Logger } from "../common/logger.js";
import type { WorkerConfig } from "./config.js";
import type { Engine } from "./engines/engine.js";
import { LlamaCppEngine } from "./engines/llamacpp/llamacpp-engine.js";
import { ensureTestModel } from "./engines/llamacpp/test-model/generate.js";
import { OpenAiEngine } from "./engines/openai/openai-engine.js";
import { SimEngine } from "./engines/sim/sim-engine.js";
import { LoadProgressLog, loadProgressField } from "./load-progress.js";

/** The id under which the generated test model is served. */
export const testModelId = "infermesh-test";

/** Builds the configured engine; llama.cpp with no model configured generates and serves the test model. */
export async function loadEngine(config: WorkerConfig, logger: Logger): Promise<Engine> {
  if (config.engine === "sim") {
    const engine = SimEngine.create({
      preset: config.simPreset,
      modelId: config.modelId || undefined,
      timeScale: config.simTimeScale,
      wakeIntervalMs: config.simWakeIntervalMs,
      seed: config.simSeed,
      maxTokensPerDelta: config.simMaxTokensPerDelta,
      answerTokensMin: config.simAnswerTokensMin,
      answerTokensMax: config.simAnswerTokensMax,
      maxBatch: config.simMaxBatch,
      failureRatio: config.simFailureRatio,
    });
    logger.warn(
      { preset: config.simPreset, models: engine.models().map((model) => model.id) },
      "serving the GPU simulator: its text is synthetic, its timing simulated",
    );
    return engine;
  }
  if (config.engine === "openai") {
    if (config.upstreamUrl === "") throw new Error("the openai engine needs upstreamUrl (INFERMESH_WORKER_UPSTREAM_URL or --upstream-url)");
    logger.info({ upstream: config.upstreamUrl, flavor: config.upstreamFlavor }, "connecting to the upstream server");
    return OpenAiEngine.start(
      {
        baseUrl: config.upstreamUrl,
        apiKey: config.upstreamApiKey,
        modelIds: config.upstreamModelIds,
        metricsUrl: config.upstreamMetricsUrl,
        flavor: config.upstreamFlavor,
        priorityOrder: config.upstreamPriority,
      },
      { logger },
    );
  }
  let modelPath = config.modelPath;
  let modelId = config.modelId || undefined;
  let description = "GGUF model";
  if (modelPath === "") {
    const testModel = await ensureTestModel({
      cacheDir: resolve(config.cacheDir),
      size: config.testModelSize,
      architecture: config.testModelArchitecture,
      weightType: "f16",
    });
    modelPath = testModel.path;
    modelId ??= testModelId;
    description = `infermesh test model: ${testModel.parameterCount.toLocaleString("en")} random weights, real BPE tokenizer; its answers are nonsense`;
    logger.warn(
      { path: testModel.path, parameters: testModel.parameterCount, created: testModel.created, build_ms: Math.round(testModel.elapsedMs) },
      `No model configured: serving the generated test model "${modelId}" (random weights: its answers are nonsense). ` +
        `To serve a real model, point the worker at a GGUF, e.g. npm start -- --model /models/gpt-oss-20b-mxfp4.gguf`,
    );
  }
  logger.info({ modelPath, threads: config.threads, contextTokens: config.contextTokens, sequences: config.sequences }, "loading model");
  const progress = new LoadProgressLog((fraction) =>
    logger.info({ [loadProgressField]: fraction }, `loading model: ${Math.floor(fraction * 100)} %`),
  );
  return LlamaCppEngine.load({
    modelPath,
    modelId,
    description,
    gpu: config.gpu,
    gpuIndex: config.gpuIndex < 0 ? undefined : config.gpuIndex,
    threads: config.threads,
    contextTokens: config.contextTokens,
    sequences: config.sequences,
    batchSize: config.batchSize,
    flashAttention: config.flashAttention,
    onLoadProgress: (fraction) => progress.update(fraction),
  });
}
