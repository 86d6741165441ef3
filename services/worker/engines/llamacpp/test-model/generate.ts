/**
 * Builds (and caches) a small GGUF test model that llama.cpp loads and runs, in
 * one of two architectures:
 * - `gpt-oss` (the default): the architecture of OpenAI's gpt-oss-20b/120b, i.e.
 *   mixture-of-experts FFN (SwiGLU with clamping, router with bias), attention
 *   with biases and per-head sinks, sliding-window attention on every other layer,
 *   YaRN RoPE, and the harmony chat format with its special tokens;
 * - `llama`: dense SwiGLU FFN, grouped-query attention, ChatML.
 * Weights are random from a seeded PRNG and the byte-level BPE tokenizer is real,
 * trained on an embedded corpus. Its answers are nonsense; it exists so the
 * serving stack can be exercised end to end without downloading a model.
 */

import { createHash } from "node:crypto";
import { mkdir, open, readdir, stat, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import { gguf, writeGguf, GGUF_MAGIC, GGUF_VERSION, type GgufTensor, type GgufTensorType, type GgufValue } from "./gguf-writer.js";
import { TRAINING_CORPUS } from "./corpus.js";
import { HARMONY_CHAT_TEMPLATE } from "./harmony-template.js";
import {
  CHATML_SPECIAL_TOKENS,
  CHATML_TEMPLATE,
  DEFAULT_VOCAB_SIZE,
  HARMONY_SPECIAL_TOKENS,
  trainByteLevelBpe,
  type PretokenizerName,
} from "./tokenizer.js";

/**
 * Bump whenever the generator's output changes in a way the cache key below does
 * not already capture (weight init, tensor layout, metadata...).
 */
export const TEST_MODEL_FORMAT_VERSION = 1;
export const TEST_MODEL_NAME = "infermesh-test-model";
export const DEFAULT_TEST_MODEL_SEED = 42;

export type TestModelArchitecture = "gpt-oss" | "llama";
export const TEST_MODEL_ARCHITECTURES: readonly TestModelArchitecture[] = ["gpt-oss", "llama"];
/** The architecture built when none is asked for: that of gpt-oss-20b, so tests run the code paths it needs. */
export const DEFAULT_TEST_MODEL_ARCHITECTURE: TestModelArchitecture = "gpt-oss";

export type TestModelSize = "tiny" | "small" | "medium";
export type TestModelWeightType = GgufTensorType;
export const TEST_MODEL_SIZES: readonly TestModelSize[] = ["tiny", "small", "medium"];

interface CommonHyperparameters {
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly embeddingLength: number;
  readonly blockCount: number;
  readonly headCount: number;
  readonly headCountKv: number;
  /** Size of one attention head (keys, values and RoPE). */
  readonly headDim: number;
  readonly rmsNormEpsilon: number;
  readonly ropeFreqBase: number;
}

/** Dense llama: attention width is `embeddingLength` (= headCount · headDim). */
export interface LlamaHyperparameters extends CommonHyperparameters {
  readonly architecture: "llama";
  readonly feedForwardLength: number;
}

/**
 * gpt-oss: `expertCount` SwiGLU experts of width `expertFeedForwardLength`, of which
 * `expertUsedCount` run per token; even layers attend to the last `slidingWindow`
 * tokens, odd layers to all; the attention width (headCount · headDim) need not
 * equal `embeddingLength`, as in gpt-oss-20b (64 · 64 = 4096 vs 2880).
 */
export interface GptOssHyperparameters extends CommonHyperparameters {
  readonly architecture: "gpt-oss";
  readonly expertCount: number;
  readonly expertUsedCount: number;
  readonly expertFeedForwardLength: number;
  readonly slidingWindow: number;
  /** YaRN context extension factor and the context length it extends (gpt-oss: 32 and 4096). */
  readonly ropeScalingFactor: number;
  readonly ropeScalingOriginalContextLength: number;
}

export type TestModelHyperparameters = LlamaHyperparameters | GptOssHyperparameters;

const COMMON = { vocabSize: DEFAULT_VOCAB_SIZE, contextLength: 4096, headDim: 64, rmsNormEpsilon: 1e-5 } as const;
const LLAMA = { ...COMMON, architecture: "llama", ropeFreqBase: 10000 } as const;
// RoPE base, YaRN factor and window as in gpt-oss-20b; its 131072-token context is cut to 4096.
const GPT_OSS = {
  ...COMMON,
  architecture: "gpt-oss",
  ropeFreqBase: 150000,
  ropeScalingFactor: 32,
  ropeScalingOriginalContextLength: 4096,
  slidingWindow: 128,
} as const;

/** Head dimension is 64 everywhere; K/V heads are shared (GQA) as in current models. */
export const TEST_MODEL_HYPERPARAMETERS: {
  readonly llama: Readonly<Record<TestModelSize, LlamaHyperparameters>>;
  readonly "gpt-oss": Readonly<Record<TestModelSize, GptOssHyperparameters>>;
} = {
  llama: {
    tiny: { ...LLAMA, embeddingLength: 192, blockCount: 4, feedForwardLength: 512, headCount: 3, headCountKv: 1 },
    small: { ...LLAMA, embeddingLength: 384, blockCount: 6, feedForwardLength: 1024, headCount: 6, headCountKv: 2 },
    medium: { ...LLAMA, embeddingLength: 512, blockCount: 8, feedForwardLength: 1408, headCount: 8, headCountKv: 4 },
  },
  "gpt-oss": {
    tiny: {
      ...GPT_OSS,
      embeddingLength: 192,
      blockCount: 4,
      headCount: 4,
      headCountKv: 1,
      expertCount: 4,
      expertUsedCount: 2,
      expertFeedForwardLength: 192,
    },
    small: {
      ...GPT_OSS,
      embeddingLength: 384,
      blockCount: 6,
      headCount: 8,
      headCountKv: 2,
      expertCount: 8,
      expertUsedCount: 2,
      expertFeedForwardLength: 256,
    },
    medium: {
      ...GPT_OSS,
      embeddingLength: 512,
      blockCount: 8,
      headCount: 8,
      headCountKv: 4,
      expertCount: 8,
      expertUsedCount: 2,
      expertFeedForwardLength: 256,
    },
  },
};

export interface EnsureTestModelOptions {
  /** Folder for the cached GGUF files; created if missing. */
  readonly cacheDir: string;
  /** Default "gpt-oss" ({@link DEFAULT_TEST_MODEL_ARCHITECTURE}). */
  readonly architecture?: TestModelArchitecture;
  /** Unsigned 32-bit weight seed. Default 42. */
  readonly seed?: number;
  /** Default "small". */
  readonly size?: TestModelSize;
  /** Storage type of the weight matrices (norms, biases and sinks are always F32). Default "f32". */
  readonly weightType?: TestModelWeightType;
}

export interface TestModelSpecialTokenIds {
  /** Beginning of text (never added automatically). */
  readonly bos: number;
  /** What llama.cpp reports as EOS: `<|im_end|>` (llama) or `<|return|>` (gpt-oss). */
  readonly eos: number;
  readonly pad: number;
  /** The tokens llama.cpp ends generation on. */
  readonly endOfGeneration: readonly number[];
  /** Every special token's id, by its text. */
  readonly byText: Readonly<Record<string, number>>;
}

export interface TestModel {
  /** Absolute path of the GGUF file. */
  readonly path: string;
  readonly fileName: string;
  /** False when the file was already in the cache. */
  readonly created: boolean;
  readonly parameterCount: number;
  /** Parameters used per token: all of them, less the experts a token does not use. */
  readonly activeParameterCount: number;
  readonly fileBytes: number;
  /** Time this call spent, building included. */
  readonly elapsedMs: number;
  readonly architecture: TestModelArchitecture;
  readonly size: TestModelSize;
  readonly seed: number;
  readonly weightType: TestModelWeightType;
  readonly formatVersion: number;
  readonly hyperparameters: TestModelHyperparameters;
  readonly specialTokens: TestModelSpecialTokenIds;
}

/** Tokenizer settings and chat format of each architecture. */
const CHAT_FORMAT: Readonly<
  Record<
    TestModelArchitecture,
    {
      readonly pretokenizer: PretokenizerName;
      readonly specialTokens: readonly string[];
      readonly chatTemplate: string;
      readonly bos: string;
      readonly eos: string;
      readonly pad: string;
      /** Written as `tokenizer.ggml.eot_token_id` when set. */
      readonly eot?: string;
      readonly endOfGeneration: readonly string[];
    }
  >
> = {
  llama: {
    pretokenizer: "qwen2",
    specialTokens: CHATML_SPECIAL_TOKENS,
    chatTemplate: CHATML_TEMPLATE,
    bos: "<|endoftext|>",
    eos: "<|im_end|>",
    pad: "<|endoftext|>",
    eot: "<|im_end|>",
    endOfGeneration: ["<|endoftext|>", "<|im_end|>"],
  },
  // As in gpt-oss's own GGUF files, llama.cpp finds the end-of-generation tokens by their text.
  "gpt-oss": {
    pretokenizer: "gpt-4o",
    specialTokens: HARMONY_SPECIAL_TOKENS,
    chatTemplate: HARMONY_CHAT_TEMPLATE,
    bos: "<|startoftext|>",
    eos: "<|return|>",
    pad: "<|endoftext|>",
    // gpt-oss's files leave EOT to llama.cpp's guess by text, which lands on <|endoftext|>
    // there but may land on <|end|> here; node-llama-cpp would then end every reply at
    // the first message's <|end|>. Naming it gives the effective settings of gpt-oss-20b.
    eot: "<|endoftext|>",
    endOfGeneration: ["<|endoftext|>", "<|return|>", "<|call|>"],
  },
};

function attentionParameters(h: TestModelHyperparameters): number {
  const d = h.embeddingLength;
  const qDim = h.headCount * h.headDim;
  const kvDim = h.headCountKv * h.headDim;
  const weights = d * qDim + 2 * d * kvDim + qDim * d; // attn_q, attn_k, attn_v, attn_output
  if (h.architecture === "llama") return weights;
  return weights + qDim + 2 * kvDim + d + h.headCount; // biases and attn_sinks
}

function expertParameters(h: GptOssHyperparameters): number {
  const d = h.embeddingLength;
  const ff = h.expertFeedForwardLength;
  return 3 * d * ff + 2 * ff + d; // gate, up, down with their biases
}

function layerParameters(h: TestModelHyperparameters, experts: number): number {
  const d = h.embeddingLength;
  const norms = 2 * d; // attn_norm and ffn_norm / post_attention_norm
  if (h.architecture === "llama") return norms + attentionParameters(h) + 3 * d * h.feedForwardLength;
  const router = d * h.expertCount + h.expertCount;
  return norms + attentionParameters(h) + router + experts * expertParameters(h);
}

/** Parameters of the model: embeddings, output head, and every layer's weights, biases and norms. */
export function countTestModelParameters(h: TestModelHyperparameters): number {
  const experts = h.architecture === "gpt-oss" ? h.expertCount : 0;
  return 2 * h.vocabSize * h.embeddingLength + h.embeddingLength + h.blockCount * layerParameters(h, experts);
}

/** Parameters that take part in computing one token: {@link countTestModelParameters} less the unused experts. */
export function countActiveTestModelParameters(h: TestModelHyperparameters): number {
  const experts = h.architecture === "gpt-oss" ? h.expertUsedCount : 0;
  return 2 * h.vocabSize * h.embeddingLength + h.embeddingLength + h.blockCount * layerParameters(h, experts);
}

function specialTokenIds(architecture: TestModelArchitecture, vocabSize: number): TestModelSpecialTokenIds {
  // Special tokens are the last ids of the vocabulary, in their list's order.
  const format = CHAT_FORMAT[architecture];
  const base = vocabSize - format.specialTokens.length;
  const byText: Record<string, number> = {};
  format.specialTokens.forEach((text, index) => {
    byText[text] = base + index;
  });
  const id = (text: string): number => byText[text]!;
  return {
    bos: id(format.bos),
    eos: id(format.eos),
    pad: id(format.pad),
    endOfGeneration: format.endOfGeneration.map(id),
    byText,
  };
}

type TestModelChoice = { architecture?: TestModelArchitecture; size?: TestModelSize; seed?: number; weightType?: TestModelWeightType };

/** Applies the defaults and rejects an unknown architecture, size or weight type or a bad seed. */
function resolveChoice(options: TestModelChoice) {
  const architecture = options.architecture ?? DEFAULT_TEST_MODEL_ARCHITECTURE;
  const size = options.size ?? "small";
  const seed = options.seed ?? DEFAULT_TEST_MODEL_SEED;
  const weightType = options.weightType ?? "f32";
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) {
    throw new RangeError(`seed must be an integer in [0, 2^32), got ${seed}`);
  }
  if (!TEST_MODEL_ARCHITECTURES.includes(architecture)) throw new RangeError(`unknown test model architecture ${String(architecture)}`);
  if (!TEST_MODEL_SIZES.includes(size)) throw new RangeError(`unknown test model size ${String(size)}`);
  const hyperparameters: TestModelHyperparameters = TEST_MODEL_HYPERPARAMETERS[architecture][size];
  if (weightType !== "f32" && weightType !== "f16") throw new RangeError(`unknown weight type ${String(weightType)}`);
  return { architecture, size, seed, weightType, hyperparameters };
}

/**
 * File name of a cached model; encodes architecture, size, seed, weight type,
 * format version and a hash of the generator inputs.
 */
export function testModelFileName(options: TestModelChoice = {}): string {
  const { architecture, size, seed, weightType, hyperparameters } = resolveChoice(options);
  const format = CHAT_FORMAT[architecture];
  const hash = createHash("sha256")
    .update(
      JSON.stringify({
        formatVersion: TEST_MODEL_FORMAT_VERSION,
        hyperparameters,
        weightType,
        format,
      }),
    )
    .update(TRAINING_CORPUS)
    .digest("hex")
    .slice(0, 8);
  return `${TEST_MODEL_NAME}-${architecture}-${size}-seed${seed}-${weightType}-v${TEST_MODEL_FORMAT_VERSION}-${hash}.gguf`;
}

// ---------------------------------------------------------------------------
// Random weights
// ---------------------------------------------------------------------------

function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * `count` values with mean 0 and standard deviation `std` from mulberry32 seeded
 * by (seed, tensor name): each is the scaled sum of four 16-bit uniforms (an
 * Irwin–Hall approximation of a normal, bounded at ±3.46σ). Integer arithmetic
 * and exact float ops only, so the same seed gives the same bits everywhere.
 */
function randomNormal(count: number, seed: number, name: string, std: number): Float32Array {
  const out = new Float32Array(count);
  let state = mix32(seed ^ mix32(fnv1a32(name))) | 0;
  const scale = (std * Math.sqrt(3)) / 65536;
  for (let i = 0; i < count; i++) {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const r1 = (t ^ (t >>> 14)) >>> 0;
    state = (state + 0x6d2b79f5) | 0;
    t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const r2 = (t ^ (t >>> 14)) >>> 0;
    // each 16-bit half + 0.5 is uniform on (0, 65536); four of them sum to mean 131072
    const sum = (r1 & 0xffff) + (r1 >>> 16) + (r2 & 0xffff) + (r2 >>> 16) + 2 - 131072;
    out[i] = sum * scale;
  }
  return out;
}

function buildTensors(h: TestModelHyperparameters, seed: number, weightType: TestModelWeightType): GgufTensor[] {
  const d = h.embeddingLength;
  const qDim = h.headCount * h.headDim;
  const kvDim = h.headCountKv * h.headDim;
  const std = 0.02;
  // GPT-2 style: scale the projections that write into the residual stream by 1/sqrt(2·layers)
  const residualStd = std / Math.sqrt(2 * h.blockCount);
  const weights = (name: string, shape: readonly number[], sd: number, type: GgufTensorType = weightType): GgufTensor => ({
    name,
    shape,
    type,
    data: () =>
      randomNormal(
        shape.reduce((a, b) => a * b, 1),
        seed,
        name,
        sd,
      ),
  });
  // biases and sinks are small random values, stored as F32 like norms
  const vector = (name: string, shape: readonly number[], sd: number): GgufTensor => weights(name, shape, sd, "f32");
  const ones = (name: string): GgufTensor => ({ name, shape: [d], type: "f32", data: () => new Float32Array(d).fill(1) });

  const tensors: GgufTensor[] = [weights("token_embd.weight", [d, h.vocabSize], std)];
  for (let i = 0; i < h.blockCount; i++) {
    const p = `blk.${i}`;
    if (h.architecture === "llama") {
      tensors.push(
        ones(`${p}.attn_norm.weight`),
        weights(`${p}.attn_q.weight`, [d, qDim], std),
        weights(`${p}.attn_k.weight`, [d, kvDim], std),
        weights(`${p}.attn_v.weight`, [d, kvDim], std),
        weights(`${p}.attn_output.weight`, [qDim, d], residualStd),
        ones(`${p}.ffn_norm.weight`),
        weights(`${p}.ffn_gate.weight`, [d, h.feedForwardLength], std),
        weights(`${p}.ffn_up.weight`, [d, h.feedForwardLength], std),
        weights(`${p}.ffn_down.weight`, [h.feedForwardLength, d], residualStd),
      );
      continue;
    }
    const ff = h.expertFeedForwardLength;
    const experts = h.expertCount;
    tensors.push(
      ones(`${p}.attn_norm.weight`),
      weights(`${p}.attn_q.weight`, [d, qDim], std),
      vector(`${p}.attn_q.bias`, [qDim], std),
      weights(`${p}.attn_k.weight`, [d, kvDim], std),
      vector(`${p}.attn_k.bias`, [kvDim], std),
      weights(`${p}.attn_v.weight`, [d, kvDim], std),
      vector(`${p}.attn_v.bias`, [kvDim], std),
      weights(`${p}.attn_output.weight`, [qDim, d], residualStd),
      vector(`${p}.attn_output.bias`, [d], residualStd),
      vector(`${p}.attn_sinks.weight`, [h.headCount], std),
      ones(`${p}.post_attention_norm.weight`),
      weights(`${p}.ffn_gate_inp.weight`, [d, experts], std),
      vector(`${p}.ffn_gate_inp.bias`, [experts], std),
      weights(`${p}.ffn_gate_exps.weight`, [d, ff, experts], std),
      vector(`${p}.ffn_gate_exps.bias`, [ff, experts], std),
      weights(`${p}.ffn_up_exps.weight`, [d, ff, experts], std),
      vector(`${p}.ffn_up_exps.bias`, [ff, experts], std),
      weights(`${p}.ffn_down_exps.weight`, [ff, d, experts], residualStd),
      vector(`${p}.ffn_down_exps.bias`, [d, experts], residualStd),
    );
  }
  tensors.push(ones("output_norm.weight"), weights("output.weight", [d, h.vocabSize], std));
  return tensors;
}

function architectureMetadata(h: TestModelHyperparameters): Record<string, GgufValue> {
  const a = h.architecture;
  const common: Record<string, GgufValue> = {
    [`${a}.vocab_size`]: gguf.uint32(h.vocabSize),
    [`${a}.context_length`]: gguf.uint32(h.contextLength),
    [`${a}.embedding_length`]: gguf.uint32(h.embeddingLength),
    [`${a}.block_count`]: gguf.uint32(h.blockCount),
  };
  if (h.architecture === "llama") {
    return {
      ...common,
      "llama.feed_forward_length": gguf.uint32(h.feedForwardLength),
      "llama.attention.head_count": gguf.uint32(h.headCount),
      "llama.attention.head_count_kv": gguf.uint32(h.headCountKv),
      "llama.rope.dimension_count": gguf.uint32(h.headDim),
      "llama.rope.freq_base": gguf.float32(h.ropeFreqBase),
      "llama.attention.layer_norm_rms_epsilon": gguf.float32(h.rmsNormEpsilon),
    };
  }
  // The keys llama.cpp's gpt-oss loader reads (src/models/openai-moe.cpp and the
  // common loader), as llama.cpp's convert_hf_to_gguf.py writes them for gpt-oss.
  return {
    ...common,
    "gpt-oss.feed_forward_length": gguf.uint32(h.expertFeedForwardLength),
    "gpt-oss.attention.head_count": gguf.uint32(h.headCount),
    "gpt-oss.attention.head_count_kv": gguf.uint32(h.headCountKv),
    "gpt-oss.attention.key_length": gguf.uint32(h.headDim),
    "gpt-oss.attention.value_length": gguf.uint32(h.headDim),
    "gpt-oss.attention.layer_norm_rms_epsilon": gguf.float32(h.rmsNormEpsilon),
    "gpt-oss.attention.sliding_window": gguf.uint32(h.slidingWindow),
    "gpt-oss.rope.freq_base": gguf.float32(h.ropeFreqBase),
    "gpt-oss.rope.scaling.type": gguf.string("yarn"),
    "gpt-oss.rope.scaling.factor": gguf.float32(h.ropeScalingFactor),
    "gpt-oss.rope.scaling.original_context_length": gguf.uint32(h.ropeScalingOriginalContextLength),
    "gpt-oss.expert_count": gguf.uint32(h.expertCount),
    "gpt-oss.expert_used_count": gguf.uint32(h.expertUsedCount),
    "gpt-oss.expert_feed_forward_length": gguf.uint32(h.expertFeedForwardLength),
  };
}

function buildMetadata(
  architecture: TestModelArchitecture,
  size: TestModelSize,
  seed: number,
  weightType: TestModelWeightType,
): Record<string, GgufValue> {
  const h = TEST_MODEL_HYPERPARAMETERS[architecture][size];
  const format = CHAT_FORMAT[architecture];
  const vocabulary = trainByteLevelBpe({ vocabSize: h.vocabSize, specialTokens: format.specialTokens, pretokenizer: format.pretokenizer });
  if (vocabulary.tokens.length !== h.vocabSize) throw new Error("tokenizer vocabulary has the wrong size");
  const ids = specialTokenIds(architecture, h.vocabSize);
  for (const [text, id] of Object.entries(ids.byText)) {
    if (vocabulary.specialTokens[text] !== id) throw new Error(`special token ${text} is not at its expected position`);
  }
  return {
    "general.architecture": gguf.string(architecture),
    "general.type": gguf.string("model"),
    // the llama model keeps the bare name; "gpt-oss" in the other one's name is what the real files carry
    "general.name": gguf.string(architecture === "llama" ? TEST_MODEL_NAME : `${TEST_MODEL_NAME}-${architecture}`),
    "general.description": gguf.string(
      "Test model with RANDOM, untrained weights and a real byte-level BPE tokenizer; its output is meaningless.",
    ),
    "general.file_type": gguf.uint32(weightType === "f32" ? 0 : 1), // LLAMA_FTYPE_ALL_F32 / MOSTLY_F16
    "infermesh.test_model.random_weights": gguf.bool(true),
    "infermesh.test_model.format_version": gguf.uint32(TEST_MODEL_FORMAT_VERSION),
    "infermesh.test_model.size": gguf.string(size),
    "infermesh.test_model.seed": gguf.uint32(seed),

    ...architectureMetadata(h),

    "tokenizer.ggml.model": gguf.string("gpt2"),
    "tokenizer.ggml.pre": gguf.string(format.pretokenizer),
    "tokenizer.ggml.tokens": gguf.stringArray(vocabulary.tokens),
    "tokenizer.ggml.token_type": gguf.int32Array(vocabulary.tokenTypes),
    "tokenizer.ggml.merges": gguf.stringArray(vocabulary.merges),
    "tokenizer.ggml.bos_token_id": gguf.uint32(ids.bos),
    "tokenizer.ggml.eos_token_id": gguf.uint32(ids.eos),
    ...(format.eot == null ? {} : { "tokenizer.ggml.eot_token_id": gguf.uint32(ids.byText[format.eot]!) }),
    "tokenizer.ggml.padding_token_id": gguf.uint32(ids.pad),
    "tokenizer.ggml.add_bos_token": gguf.bool(false),
    "tokenizer.ggml.add_eos_token": gguf.bool(false),
    "tokenizer.chat_template": gguf.string(format.chatTemplate),
  };
}

/** Writes the model for (architecture, size, seed, weightType) to `path` (atomically). */
export async function writeTestModel(path: string, options: TestModelChoice = {}): Promise<{ bytes: number; parameterCount: number }> {
  const { architecture, size, seed, weightType, hyperparameters: h } = resolveChoice(options);
  const tensors = buildTensors(h, seed, weightType);
  const parameterCount = tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
  if (parameterCount !== countTestModelParameters(h)) throw new Error("parameter count mismatch");
  const { bytes } = await writeGguf(path, { metadata: buildMetadata(architecture, size, seed, weightType), tensors });
  return { bytes, parameterCount };
}

async function isCompleteGguf(path: string): Promise<number | undefined> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, "r");
  } catch {
    return undefined;
  }
  try {
    const { size } = await handle.stat();
    const head = Buffer.alloc(8);
    const { bytesRead } = await handle.read(head, 0, 8, 0);
    if (bytesRead < 8 || head.toString("latin1", 0, 4) !== GGUF_MAGIC || head.readUInt32LE(4) !== GGUF_VERSION) return undefined;
    return size;
  } finally {
    await handle.close();
  }
}

/** Removes temporary files that a crashed build of `fileName` left behind (older than an hour). */
async function removeStaleTemporaries(cacheDir: string, fileName: string): Promise<void> {
  const prefix = `.${fileName}.`;
  const entries = await readdir(cacheDir).catch(() => [] as string[]);
  for (const entry of entries) {
    if (!entry.startsWith(prefix) || !entry.endsWith(".tmp")) continue;
    const path = join(cacheDir, entry);
    const info = await stat(path).catch(() => undefined);
    if (info != null && Date.now() - info.mtimeMs > 60 * 60 * 1000) await unlink(path).catch(() => undefined);
  }
}

const inFlight = new Map<string, Promise<TestModel>>();

/**
 * Returns the cached test model for (architecture, size, seed, weightType) in `cacheDir`,
 * building it first if it is not there (`created: true`).
 */
export function ensureTestModel(options: EnsureTestModelOptions): Promise<TestModel> {
  let choice: ReturnType<typeof resolveChoice>;
  let fileName: string;
  try {
    choice = resolveChoice(options);
    fileName = testModelFileName(choice);
  } catch (error) {
    return Promise.reject(error);
  }
  const { architecture, size, seed, weightType, hyperparameters } = choice;
  const path = resolve(options.cacheDir, fileName);
  const pending = inFlight.get(path);
  if (pending != null) return pending;

  const promise = (async (): Promise<TestModel> => {
    const started = performance.now();
    const base = {
      path,
      fileName,
      parameterCount: countTestModelParameters(hyperparameters),
      activeParameterCount: countActiveTestModelParameters(hyperparameters),
      architecture,
      size,
      seed,
      weightType,
      formatVersion: TEST_MODEL_FORMAT_VERSION,
      hyperparameters,
      specialTokens: specialTokenIds(architecture, hyperparameters.vocabSize),
    };
    const existing = await isCompleteGguf(path);
    if (existing != null) {
      return { ...base, created: false, fileBytes: existing, elapsedMs: performance.now() - started };
    }
    await mkdir(options.cacheDir, { recursive: true });
    await removeStaleTemporaries(options.cacheDir, fileName);
    const { bytes } = await writeTestModel(path, { architecture, size, seed, weightType });
    return { ...base, created: true, fileBytes: bytes, elapsedMs: performance.now() - started };
  })();
  inFlight.set(path, promise);
  const forget = (): void => {
    inFlight.delete(path);
  };
  promise.then(forget, forget);
  return promise;
}
