import { z } from "zod";
import { meshSecuritySettings } from "../common/mesh-security/settings.js";
import { addressList, boolean, integer, loadConfig, port, type ConfigSources, optionalAddressList } from "../common/config.js";
import { userCacheDir } from "../common/paths.js";
import { priorityOrders, upstreamFlavors } from "./engines/openai/options.js";

export const workerConfigSchema = z.object({
  /** Unique id of this worker, stable across restarts; defaults to worker-<port>. */
  workerId: z.string().default(""),
  /** host:port of the gRPC server. */
  listen: z.string().default("127.0.0.1:50060"),
  /** host:port the router gives to callers; defaults to the listen address. */
  advertiseAddress: z.string().default(""),
  /** Host of the Prometheus endpoint. */
  metricsHost: z.string().default("127.0.0.1"),
  /** Port of the Prometheus endpoint. */
  metricsPort: port().default(9110),
  /**
   * host:port of the router to register with; replicas comma-separated. The worker
   * keeps a Connect stream to each, so every replica sees the whole fleet.
   */
  routerAddress: addressList().default(["127.0.0.1:50052"]),
  /** host:port of memory-guard to report KV usage to; replicas comma-separated (it reports to each); empty to run without. */
  memoryGuardAddress: optionalAddressList().default(["127.0.0.1:50053"]),
  /**
   * Least time between two load reports to the router and two KV reports to
   * memory-guard. A change after a quiet spell is reported at once; the changes of a
   * busy spell are folded into one report per interval (the router's own in-flight
   * counts bridge the gap). 0 reports every change.
   */
  reportMinIntervalMs: integer(0, 10_000).default(10),
  /**
   * GPUs this worker's model is split across (an upstream server run with tensor
   * parallelism, or a sim of one). The router sends prompts over its long-prompt
   * threshold to such workers when there are any.
   */
  tensorParallelSize: integer(1, 64).default(1),
  /**
   * llamacpp: a GGUF in-process (the default); openai: forward to an OpenAI-compatible
   * server (vLLM, SGLang, trtllm-serve, llama-server); sim: the named GPU simulator.
   */
  engine: z.enum(["llamacpp", "openai", "sim"]).default("llamacpp"),
  /** openai engine: root URL of the upstream server, without /v1. */
  upstreamUrl: z.string().default(""),
  /** openai engine: bearer key for the upstream; never logged. */
  upstreamApiKey: z.string().default(""),
  /** openai engine: comma-separated model ids; empty takes every model the upstream lists. */
  upstreamModelIds: z.string().default(""),
  /** openai engine: which server it is (decides metric names); auto tells by its metrics. */
  upstreamFlavor: z.enum(upstreamFlavors).default("auto"),
  /** openai engine: send each request's priority class as `priority`, ordered as the upstream orders it (see the openai engine's README). */
  upstreamPriority: z.enum(priorityOrders).default("off"),
  /** openai engine: the upstream's Prometheus URL; empty tries {upstreamUrl}/metrics. */
  upstreamMetricsUrl: z.string().default(""),
  /** sim engine: the simulated GPU and model. */
  simPreset: z.enum(["h100-gpt-oss-20b", "h100-gpt-oss-120b"]).default("h100-gpt-oss-20b"),
  /** sim engine: 1 is real time, 0.1 ten times faster, 0 no simulated delay at all. */
  simTimeScale: z.coerce.number().min(0).max(1000).default(1),
  /** sim engine: coalesce timer wake-ups to this period (ms); 20–50 keeps big fleets cheap. */
  simWakeIntervalMs: z.coerce.number().min(0).max(60_000).default(0),
  /** sim engine: shortest and longest natural answer in tokens (a request's max_tokens still cuts it short). */
  simAnswerTokensMin: integer(0, 16_777_216).optional(),
  simAnswerTokensMax: integer(0, 16_777_216).optional(),
  /** sim engine: seed of the synthetic text when a request has none. */
  simSeed: integer(0, 4_294_967_295).default(0),
  /** sim engine: sequences one step runs at most (the preset's is vLLM's 1,024); a smaller batch queues sooner. */
  simMaxBatch: integer(1, 65_536).optional(),
  /** sim engine: share of generations that fail at once (0 to 1), for a canary made worse on purpose; slowness is simTimeScale. */
  simFailureRatio: z.coerce.number().min(0).max(1).default(0),
  /** sim engine: most tokens one delta carries at time scale 0 (1 streams token by token). */
  simMaxTokensPerDelta: integer(1, 4_096).optional(),
  /** Path of a GGUF file; empty serves the generated test model. */
  modelPath: z.string().default(""),
  /** Model id clients use; defaults to the GGUF file name. */
  modelId: z.string().default(""),
  /** Size of the generated test model when modelPath is empty. */
  testModelSize: z.enum(["tiny", "small", "medium"]).default("small"),
  /** Architecture of the generated test model: gpt-oss exercises the same code as gpt-oss-20b. */
  testModelArchitecture: z.enum(["gpt-oss", "llama"]).default("gpt-oss"),
  /** Where the generated test model is cached; empty: the per-user model cache (userCacheDir's models/). */
  cacheDir: z.string().default(""),
  /** Directory admin LoadModel calls may load GGUFs from (paths outside it are refused); empty: the per-user model cache. */
  modelDir: z.string().default(""),
  /** "cpu" forces the CPU; "auto" uses CUDA, Vulkan or Metal when present; or name the backend. */
  gpu: z.enum(["auto", "cpu", "cuda", "vulkan", "metal"]).default("auto"),
  /** The GPU this worker owns (one worker per GPU); -1 leaves every visible GPU to the backend. */
  gpuIndex: integer(-1, 1_023).default(-1),
  /** CPU threads for decoding (1 measured fastest on a 2-core machine). */
  threads: integer(1, 512).default(1),
  /** KV cells per sequence: the longest prompt plus output one request may use. */
  contextTokens: integer(64, 1_048_576).default(2_048),
  /**
   * Sequences decoded together. 8 on the test model here: 1.3-1.45x the tokens/s of one
   * sequence (bench:worker); more adds latency per token for little more throughput.
   */
  sequences: integer(1, 256).default(8),
  /** Tokens evaluated per batch step. */
  batchSize: integer(1, 65_536).default(512),
  /** Flash attention: on CPU 4-17 % more tokens/s on the test model; what GPUs want too. */
  flashAttention: boolean().default(true),
  /** How long SIGTERM waits for running generations. */
  shutdownGraceMs: integer(0, 600_000).default(10_000),
  ...meshSecuritySettings("worker"),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
});

export type WorkerConfig = z.infer<typeof workerConfigSchema>;

/** The worker's settings; the model directories default to the per-user cache found from `sources.env`. */
export function loadWorkerConfig(sources: ConfigSources): Readonly<WorkerConfig> {
  const config = loadConfig(workerConfigSchema, sources, "INFERMESH_WORKER_");
  const models = userCacheDir(sources.env, "models");
  return Object.freeze({ ...config, cacheDir: config.cacheDir || models, modelDir: config.modelDir || models });
}
