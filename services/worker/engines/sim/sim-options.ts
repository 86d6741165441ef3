import { z } from "zod";
import { integer } from "../../../common/config.js";
import { blockTokens } from "./synthetic-text.js";

/** The simulated GPU and model: what a preset fixes. */
export interface SimFigures {
  /** The id clients use in the "model" field. */
  readonly modelId: string;
  /** What the worker reports as its device. */
  readonly device: string;
  /** Longest prompt plus output of one request, in tokens. */
  readonly contextTokens: number;
  /** KV cache size in tokens (rounded down to 16-token blocks). */
  readonly kvCapacityTokens: number;
  /** Sequences decoded together (vLLM's max_num_seqs). */
  readonly maxBatch: number;
  /** Tokens one step computes: one per decoding sequence plus prompt chunks (vLLM's max_num_batched_tokens). */
  readonly maxBatchTokens: number;
  /** Prompt tokens computed per second. */
  readonly prefillTokensPerSecond: number;
  /** Time of every step regardless of batch: the dense weights' read plus launch and sampling overhead. */
  readonly decodeFixedMs: number;
  /** Time to read every expert's weights; a step reads the share its batch touches. */
  readonly decodeExpertReadMs: number;
  /** Share of the experts one token routes to (top-k / experts); 1 for a dense model. */
  readonly decodeExpertFraction: number;
  /** Compute per decoding sequence per step. */
  readonly decodeMsPerSequence: number;
  /** Attention's KV read per step, per 1000 context tokens held by the decoding sequences. */
  readonly decodeMsPer1kKvTokens: number;
}

/*
 * Where the preset figures come from.
 *
 * H100 SXM 80 GB: HBM3 at 3.35 TB/s (NVIDIA's datasheet). We assume the large streaming
 * reads of decode reach ~85% of it, 2.85 TB/s, and that vLLM sees ~79.2 GiB of memory.
 *
 * gpt-oss-20b (openai/gpt-oss-20b config.json): 24 layers alternating sliding-window
 * (128 tokens) and full attention, 64 query heads, 8 KV heads, head_dim 64, hidden 2880,
 * 32 experts with 4 active per token, vocab 201,088, experts in MXFP4 and the rest in
 * BF16; 21B parameters, 3.6B active (model card).
 * - KV per token: K and V × 8 heads × 64 × 2 bytes = 2 KiB per layer; only the 12
 *   full-attention layers grow with the context: 24 KiB per token. (The 12 sliding
 *   layers hold at most 128 tokens, ~3 MiB per sequence: left out.)
 * - Weights: experts 24 × 32 × (2880·5760 + 2880·2880) = 19.1B × 4.25 bits (MXFP4: 4-bit
 *   values and an 8-bit scale per 32) ≈ 10.1 GB; attention 24 × 26.5M = 0.64B and
 *   embedding + unembedding 2 × 201,088 × 2880 = 1.16B in BF16 ≈ 3.6 GB: ≈ 13.7 GB
 *   (12.8 GiB), in line with the card's "runs within 16GB".
 * - KV capacity: 79.2 GiB × vLLM's gpu_memory_utilization 0.9 = 71.3 GiB, less 12.8 GiB
 *   of weights and ~3 GiB of activations and CUDA graphs ≈ 55 GiB / 24 KiB ≈ 2.4M tokens.
 * - Decode step: every step reads the dense weights, 1.28 GB of attention and 1.16 GB of
 *   unembedding, ≈ 0.86 ms, plus ~1.5 ms assumed for kernel launches, sampling and
 *   scheduling: 2.4 ms fixed. The experts, 10.1 GB ≈ 3.5 ms, are read as far as the
 *   batch touches them: B tokens touch 1 − (7/8)^B of them (nearly all from B ≈ 32).
 *   Compute per sequence 2 × 3.6B FLOP ≈ 7.2 GFLOP at ~300 TFLOPS ≈ 0.025 ms; attention
 *   reads 24 KiB per context token ≈ 0.009 ms per 1000. One stream: ≈ 2.9 ms a token
 *   (≈ 350 tokens/s); 256 sequences of 2k context: ≈ 17 ms a step (≈ 15k tokens/s).
 * - Prefill 34,000 tokens/s, from GPUStack's vLLM benchmark of gpt-oss-20b on one H100
 *   (docs.gpustack.ai, performance-lab/gpt-oss-20b/h100; vLLM 0.11 with
 *   --async-scheduling): total tokens/s of 32.6k
 *   (128-token prompts / 4 out), 33.1k (2000/100), 33.8k (4000/200) and 29.7k
 *   (32,000/100). This preset, given 1000 such requests at once (200 of the last),
 *   gives 33.4k, 32.2k, 31.3k and 32.2k.
 * - maxBatch 1024, maxBatchTokens 8192: vLLM's API-server defaults on GPUs with at least
 *   70 GiB (EngineArgs.get_batch_defaults in vllm/engine/arg_utils.py).
 *
 * gpt-oss-120b (openai/gpt-oss-120b config.json): 36 layers (18 full attention), the same
 * attention shape, 128 experts with 4 active; 117B parameters, 5.1B active.
 * - KV per token: 18 × 2 KiB = 36 KiB (llama.cpp agrees: 9216 MiB for 131,072 cells × 2
 *   sequences × 18 layers, ollama/ollama#16480).
 * - Weights: vLLM logs "Model loading took 64.38 GiB" on one H100 (vllm-project/vllm#33155;
 *   65.97 GiB in #23278). By hand: experts 36 × 128 × 24.9M = 114.7B × 4.25 bits ≈ 60.9 GB,
 *   attention 0.95B and embeddings 1.16B in BF16 ≈ 4.2 GB.
 * - KV capacity: one H100 fits it only near gpu_memory_utilization 0.95 (#23278 and #27508
 *   ran out of KV memory at the defaults): 75.2 GiB − 64.4 GiB − ~4 GiB ≈ 6.8 GiB / 36 KiB
 *   ≈ 198k tokens; 196,608 here (12,288 blocks).
 * - Decode step: dense 0.95B × 2 bytes + 1.16 GB ≈ 3.1 GB ≈ 1.1 ms plus ~2 ms of
 *   overhead for 36 layers: 3.1 ms fixed; experts 60.9 GB ≈ 21.4 ms when all are
 *   touched, share per token 4/128; 2 × 5.1B FLOP ≈ 0.035 ms per sequence; 36 KiB per
 *   context token ≈ 0.013 ms per 1000. One stream: ≈ 3.8 ms a token (≈ 260 tokens/s).
 * - Prefill 18,000 tokens/s, from GPUStack's baseline on one H100 (performance-lab/
 *   gpt-oss-120b/h100, vLLM 0.10.2 untuned): 17.1k, 14.4k, 14.2k and 16.1k total tokens/s on the
 *   four workloads above; this preset gives 17.2k, 14.4k, 12.8k and 16.6k.
 */
export const simPresets = {
  "h100-gpt-oss-20b": {
    modelId: "sim-gpt-oss-20b",
    device: "sim:h100",
    contextTokens: 131_072,
    kvCapacityTokens: 2_400_000,
    maxBatch: 1024,
    maxBatchTokens: 8192,
    prefillTokensPerSecond: 34_000,
    decodeFixedMs: 2.4,
    decodeExpertReadMs: 3.5,
    decodeExpertFraction: 4 / 32,
    decodeMsPerSequence: 0.025,
    decodeMsPer1kKvTokens: 0.009,
  },
  "h100-gpt-oss-120b": {
    modelId: "sim-gpt-oss-120b",
    device: "sim:h100",
    contextTokens: 131_072,
    kvCapacityTokens: 196_608,
    maxBatch: 1024,
    maxBatchTokens: 8192,
    prefillTokensPerSecond: 18_000,
    decodeFixedMs: 3.1,
    decodeExpertReadMs: 21.4,
    decodeExpertFraction: 4 / 128,
    decodeMsPerSequence: 0.035,
    decodeMsPer1kKvTokens: 0.013,
  },
} as const satisfies Record<string, SimFigures>;

export type SimPresetName = keyof typeof simPresets;

const presetNames = Object.keys(simPresets) as [SimPresetName, ...SimPresetName[]];

/** A decimal setting; accepts numbers from files and decimal text from env and flags. */
const decimal = (min: number, max: number) =>
  z
    .union(
      [
        z.number(),
        z
          .string()
          .regex(/^-?\d+(\.\d+)?$/, "expected a number")
          .transform(Number),
      ],
      { error: "expected a number" },
    )
    .pipe(z.number().min(min).max(max));

/**
 * Settings of the sim engine. A preset fills in every figure of the GPU and model not
 * given; the rest are how the simulation runs.
 */
export const simOptionsSchema = z
  .object({
    /** The GPU and model simulated. */
    preset: z.enum(presetNames).default("h100-gpt-oss-20b"),
    /** Overrides the preset's model id, e.g. "gpt-oss-20b" for fleet benchmarks. */
    modelId: z.string().min(1).optional(),
    /** Overrides the description models() gives. */
    description: z.string().min(1).optional(),
    device: z.string().min(1).optional(),
    contextTokens: integer(16, 16_777_216).optional(),
    kvCapacityTokens: integer(16, 1_000_000_000).optional(),
    maxBatch: integer(1, 65_536).optional(),
    maxBatchTokens: integer(1, 1_048_576).optional(),
    prefillTokensPerSecond: decimal(1, 1e9).optional(),
    decodeFixedMs: decimal(0, 60_000).optional(),
    decodeExpertReadMs: decimal(0, 60_000).optional(),
    decodeExpertFraction: decimal(0, 1).optional(),
    decodeMsPerSequence: decimal(0, 60_000).optional(),
    decodeMsPer1kKvTokens: decimal(0, 60_000).optional(),
    /** Real time per simulated time: 1 runs as the GPU would, 0.1 ten times faster, 0 costs no time at all. */
    timeScale: decimal(0, 1000).default(1),
    /** Least real time between scheduler wake-ups; steps that end in between run at the next one and their tokens arrive together. 0 wakes at every step. */
    wakeIntervalMs: decimal(0, 60_000).default(0),
    /** Most tokens in one delta; tokens that arrive together (timeScale 0, wakeIntervalMs) come in deltas this big. */
    maxTokensPerDelta: integer(1, 65_536).default(16),
    /** Shortest and longest natural answer in tokens; each generation draws its length between them. */
    answerTokensMin: integer(0, 16_777_216).default(16),
    answerTokensMax: integer(0, 16_777_216).default(512),
    /** Reasoning tokens before the answer at each reasoning effort. */
    reasoningTokensLow: integer(0, 16_777_216).default(16),
    reasoningTokensMedium: integer(0, 16_777_216).default(64),
    reasoningTokensHigh: integer(0, 16_777_216).default(256),
    /** Seed of generations whose request sets none, and of embeddings. */
    seed: integer(0, 4_294_967_295).default(0),
    /**
     * Share of generations that fail at once with an engine error (0 to 1): a canary made
     * worse on purpose, for release gates and rollout tests. Drawn from `seed`, so a run
     * repeats. Slowness is `timeScale`.
     */
    failureRatio: decimal(0, 1).default(0),
    /** Length of the synthetic embedding vectors. */
    embeddingDimensions: integer(1, 65_536).default(256),
  })
  .transform((raw, context) => {
    const figures: SimFigures = { ...simPresets[raw.preset] };
    for (const key of Object.keys(figures) as (keyof SimFigures)[]) {
      if (raw[key] !== undefined) (figures as Record<keyof SimFigures, unknown>)[key] = raw[key];
    }
    const options = {
      ...raw,
      ...figures,
      description:
        raw.description ??
        `simulated ${raw.preset} ("sim" engine): synthetic text and timing modelled on the real thing; not a language model`,
    };
    const problems: [string, string][] = [];
    if (Math.floor(options.kvCapacityTokens / blockTokens) * blockTokens < options.contextTokens) {
      problems.push(["kvCapacityTokens", `must hold at least one full context (${options.contextTokens} tokens)`]);
    }
    if (options.maxBatchTokens < options.maxBatch) problems.push(["maxBatchTokens", `must be at least maxBatch (${options.maxBatch})`]);
    if (options.answerTokensMax < options.answerTokensMin) problems.push(["answerTokensMax", "must be at least answerTokensMin"]);
    for (const [path, message] of problems) context.issues.push({ code: "custom", message, input: raw, path: [path] });
    return problems.length > 0 ? z.NEVER : Object.freeze(options);
  });

/** Settings as given, e.g. from the worker's configuration. */
export type SimOptionsInput = z.input<typeof simOptionsSchema>;
/** Settings with the preset applied and everything checked. */
export type SimOptions = z.output<typeof simOptionsSchema>;
