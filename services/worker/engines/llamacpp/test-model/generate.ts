/**
 * Builds (and caches) a small GGUF test model that llama.cpp loads and runs:
 * the `llama` architecture with random weights from a seeded PRNG and a real
 * byte-level BPE tokenizer trained on an embedded corpus. Its answers are
 * nonsense; it exists so the serving stack can be exercised end to end without
 * downloading a model.
 */

import { createHash } from "node:crypto";
import { mkdir, open, readdir, stat, unlink } from "node:fs/promises";
import { join, resolve } from "node:path";
import { gguf, writeGguf, GGUF_MAGIC, GGUF_VERSION, type GgufTensor, type GgufTensorType, type GgufValue } from "./gguf-writer.js";
import { TRAINING_CORPUS } from "./corpus.js";
import {
    CHATML_TEMPLATE,
    DEFAULT_VOCAB_SIZE,
    PRETOKENIZER_NAME,
    SPECIAL_TOKENS,
    trainByteLevelBpe,
} from "./tokenizer.js";

/**
 * Bump whenever the generator's output changes in a way the cache key below does
 * not already capture (weight init, tensor layout, metadata...).
 */
export const TEST_MODEL_FORMAT_VERSION = 1;
export const TEST_MODEL_NAME = "infermesh-test-model";
export const DEFAULT_TEST_MODEL_SEED = 42;

export type TestModelSize = "tiny" | "small" | "medium";
export type TestModelWeightType = GgufTensorType;
export const TEST_MODEL_SIZES: readonly TestModelSize[] = ["tiny", "small", "medium"];

export interface TestModelHyperparameters {
    readonly vocabSize: number;
    readonly contextLength: number;
    readonly embeddingLength: number;
    readonly blockCount: number;
    readonly feedForwardLength: number;
    readonly headCount: number;
    readonly headCountKv: number;
    readonly rmsNormEpsilon: number;
    readonly ropeFreqBase: number;
}

const COMMON = { vocabSize: DEFAULT_VOCAB_SIZE, contextLength: 4096, rmsNormEpsilon: 1e-5, ropeFreqBase: 10000 } as const;

/** Head dimension is 64 for every size; K/V heads are shared (GQA) as in current models. */
export const TEST_MODEL_HYPERPARAMETERS: Readonly<Record<TestModelSize, TestModelHyperparameters>> = {
    tiny: { ...COMMON, embeddingLength: 192, blockCount: 4, feedForwardLength: 512, headCount: 3, headCountKv: 1 },
    small: { ...COMMON, embeddingLength: 384, blockCount: 6, feedForwardLength: 1024, headCount: 6, headCountKv: 2 },
    medium: { ...COMMON, embeddingLength: 512, blockCount: 8, feedForwardLength: 1408, headCount: 8, headCountKv: 4 },
};

export interface EnsureTestModelOptions {
    /** Folder for the cached GGUF files; created if missing. */
    readonly cacheDir: string;
    /** Unsigned 32-bit weight seed. Default 42. */
    readonly seed?: number;
    /** Default "small". */
    readonly size?: TestModelSize;
    /** Storage type of the 2-D weight matrices (norms are always F32). Default "f32". */
    readonly weightType?: TestModelWeightType;
}

export interface TestModelSpecialTokenIds {
    /** `<|endoftext|>`: BOS and padding (not added automatically). */
    readonly endOfText: number;
    readonly imStart: number;
    /** `<|im_end|>`: EOS, ends a ChatML turn. */
    readonly imEnd: number;
    readonly bos: number;
    readonly eos: number;
    readonly pad: number;
}

export interface TestModel {
    /** Absolute path of the GGUF file. */
    readonly path: string;
    readonly fileName: string;
    /** False when the file was already in the cache. */
    readonly created: boolean;
    readonly parameterCount: number;
    readonly fileBytes: number;
    /** Time this call spent, building included. */
    readonly elapsedMs: number;
    readonly size: TestModelSize;
    readonly seed: number;
    readonly weightType: TestModelWeightType;
    readonly formatVersion: number;
    readonly hyperparameters: TestModelHyperparameters;
    readonly specialTokens: TestModelSpecialTokenIds;
}

/** Parameters of the model: embeddings, output head, attention, SwiGLU FFN and norm weights. */
export function countTestModelParameters(h: TestModelHyperparameters): number {
    const headDim = h.embeddingLength / h.headCount;
    const kvDim = headDim * h.headCountKv;
    const d = h.embeddingLength;
    const perLayer =
        d + // attn_norm
        d * d + // attn_q
        2 * d * kvDim + // attn_k, attn_v
        d * d + // attn_output
        d + // ffn_norm
        3 * d * h.feedForwardLength; // ffn_gate, ffn_up, ffn_down
    return 2 * h.vocabSize * d + d + h.blockCount * perLayer;
}

function specialTokenIds(vocabSize: number): TestModelSpecialTokenIds {
    // Special tokens are the last ids of the vocabulary, in SPECIAL_TOKENS order.
    const base = vocabSize - SPECIAL_TOKENS.length;
    const endOfText = base + SPECIAL_TOKENS.indexOf("<|endoftext|>");
    const imStart = base + SPECIAL_TOKENS.indexOf("<|im_start|>");
    const imEnd = base + SPECIAL_TOKENS.indexOf("<|im_end|>");
    return { endOfText, imStart, imEnd, bos: endOfText, eos: imEnd, pad: endOfText };
}

type TestModelChoice = { size?: TestModelSize; seed?: number; weightType?: TestModelWeightType };

/** Applies the defaults and rejects an unknown size or weight type or a bad seed. */
function resolveChoice(options: TestModelChoice) {
    const size = options.size ?? "small";
    const seed = options.seed ?? DEFAULT_TEST_MODEL_SEED;
    const weightType = options.weightType ?? "f32";
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) {
        throw new RangeError(`seed must be an integer in [0, 2^32), got ${seed}`);
    }
    if (!TEST_MODEL_SIZES.includes(size)) throw new RangeError(`unknown test model size ${String(size)}`);
    const hyperparameters = TEST_MODEL_HYPERPARAMETERS[size];
    if (weightType !== "f32" && weightType !== "f16") throw new RangeError(`unknown weight type ${String(weightType)}`);
    return { size, seed, weightType, hyperparameters };
}

/** File name of a cached model; encodes size, seed, weight type, format version and a hash of the generator inputs. */
export function testModelFileName(options: TestModelChoice = {}): string {
    const { size, seed, weightType, hyperparameters } = resolveChoice(options);
    const hash = createHash("sha256")
        .update(
            JSON.stringify({
                formatVersion: TEST_MODEL_FORMAT_VERSION,
                hyperparameters,
                weightType,
                pretokenizer: PRETOKENIZER_NAME,
                specialTokens: SPECIAL_TOKENS,
                chatTemplate: CHATML_TEMPLATE,
            }),
        )
        .update(TRAINING_CORPUS)
        .digest("hex")
        .slice(0, 8);
    return `${TEST_MODEL_NAME}-${size}-seed${seed}-${weightType}-v${TEST_MODEL_FORMAT_VERSION}-${hash}.gguf`;
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
    const kvDim = (d / h.headCount) * h.headCountKv;
    const std = 0.02;
    // GPT-2 style: scale the projections that write into the residual stream by 1/sqrt(2·layers)
    const residualStd = std / Math.sqrt(2 * h.blockCount);
    const matrix = (name: string, cols: number, rows: number, sd: number): GgufTensor => ({
        name,
        shape: [cols, rows],
        type: weightType,
        data: () => randomNormal(cols * rows, seed, name, sd),
    });
    const ones = (name: string): GgufTensor => ({ name, shape: [d], type: "f32", data: () => new Float32Array(d).fill(1) });

    const tensors: GgufTensor[] = [matrix("token_embd.weight", d, h.vocabSize, std)];
    for (let i = 0; i < h.blockCount; i++) {
        const p = `blk.${i}`;
        tensors.push(
            ones(`${p}.attn_norm.weight`),
            matrix(`${p}.attn_q.weight`, d, d, std),
            matrix(`${p}.attn_k.weight`, d, kvDim, std),
            matrix(`${p}.attn_v.weight`, d, kvDim, std),
            matrix(`${p}.attn_output.weight`, d, d, residualStd),
            ones(`${p}.ffn_norm.weight`),
            matrix(`${p}.ffn_gate.weight`, d, h.feedForwardLength, std),
            matrix(`${p}.ffn_up.weight`, d, h.feedForwardLength, std),
            matrix(`${p}.ffn_down.weight`, h.feedForwardLength, d, residualStd),
        );
    }
    tensors.push(ones("output_norm.weight"), matrix("output.weight", d, h.vocabSize, std));
    return tensors;
}

function buildMetadata(size: TestModelSize, seed: number, weightType: TestModelWeightType): Record<string, GgufValue> {
    const h = TEST_MODEL_HYPERPARAMETERS[size];
    const vocabulary = trainByteLevelBpe({ vocabSize: h.vocabSize });
    if (vocabulary.tokens.length !== h.vocabSize) throw new Error("tokenizer vocabulary has the wrong size");
    const ids = specialTokenIds(h.vocabSize);
    if (vocabulary.specialTokens["<|im_end|>"] !== ids.imEnd || vocabulary.specialTokens["<|endoftext|>"] !== ids.endOfText) {
        throw new Error("special token ids do not match their expected positions");
    }
    const headDim = h.embeddingLength / h.headCount;
    return {
        "general.architecture": gguf.string("llama"),
        "general.type": gguf.string("model"),
        "general.name": gguf.string(TEST_MODEL_NAME),
        "general.description": gguf.string(
            "Test model with RANDOM, untrained weights and a real byte-level BPE tokenizer; its output is meaningless.",
        ),
        "general.file_type": gguf.uint32(weightType === "f32" ? 0 : 1), // LLAMA_FTYPE_ALL_F32 / MOSTLY_F16
        "infermesh.test_model.random_weights": gguf.bool(true),
        "infermesh.test_model.format_version": gguf.uint32(TEST_MODEL_FORMAT_VERSION),
        "infermesh.test_model.size": gguf.string(size),
        "infermesh.test_model.seed": gguf.uint32(seed),

        "llama.vocab_size": gguf.uint32(h.vocabSize),
        "llama.context_length": gguf.uint32(h.contextLength),
        "llama.embedding_length": gguf.uint32(h.embeddingLength),
        "llama.block_count": gguf.uint32(h.blockCount),
        "llama.feed_forward_length": gguf.uint32(h.feedForwardLength),
        "llama.attention.head_count": gguf.uint32(h.headCount),
        "llama.attention.head_count_kv": gguf.uint32(h.headCountKv),
        "llama.rope.dimension_count": gguf.uint32(headDim),
        "llama.rope.freq_base": gguf.float32(h.ropeFreqBase),
        "llama.attention.layer_norm_rms_epsilon": gguf.float32(h.rmsNormEpsilon),

        "tokenizer.ggml.model": gguf.string("gpt2"),
        "tokenizer.ggml.pre": gguf.string(PRETOKENIZER_NAME),
        "tokenizer.ggml.tokens": gguf.stringArray(vocabulary.tokens),
        "tokenizer.ggml.token_type": gguf.int32Array(vocabulary.tokenTypes),
        "tokenizer.ggml.merges": gguf.stringArray(vocabulary.merges),
        "tokenizer.ggml.bos_token_id": gguf.uint32(ids.bos),
        "tokenizer.ggml.eos_token_id": gguf.uint32(ids.eos),
        "tokenizer.ggml.eot_token_id": gguf.uint32(ids.imEnd),
        "tokenizer.ggml.padding_token_id": gguf.uint32(ids.pad),
        "tokenizer.ggml.add_bos_token": gguf.bool(false),
        "tokenizer.ggml.add_eos_token": gguf.bool(false),
        "tokenizer.chat_template": gguf.string(CHATML_TEMPLATE),
    };
}

/** Writes the model for (size, seed, weightType) to `path` (atomically). */
export async function writeTestModel(
    path: string,
    options: TestModelChoice = {},
): Promise<{ bytes: number; parameterCount: number }> {
    const { size, seed, weightType, hyperparameters: h } = resolveChoice(options);
    const tensors = buildTensors(h, seed, weightType);
    const parameterCount = tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
    if (parameterCount !== countTestModelParameters(h)) throw new Error("parameter count mismatch");
    const { bytes } = await writeGguf(path, { metadata: buildMetadata(size, seed, weightType), tensors });
    return { bytes, parameterCount };
}

async function isCompleteGguf(path: string): Promise<number | undefined> {
    let handle;
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
 * Returns the cached test model for (size, seed, weightType) in `cacheDir`,
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
    const { size, seed, weightType, hyperparameters } = choice;
    const path = resolve(options.cacheDir, fileName);
    const pending = inFlight.get(path);
    if (pending != null) return pending;

    const promise = (async (): Promise<TestModel> => {
        const started = performance.now();
        const base = {
            path,
            fileName,
            parameterCount: countTestModelParameters(hyperparameters),
            size,
            seed,
            weightType,
            formatVersion: TEST_MODEL_FORMAT_VERSION,
            hyperparameters,
            specialTokens: specialTokenIds(hyperparameters.vocabSize),
        };
        const existing = await isCompleteGguf(path);
        if (existing != null) {
            return { ...base, created: false, fileBytes: existing, elapsedMs: performance.now() - started };
        }
        await mkdir(options.cacheDir, { recursive: true });
        await removeStaleTemporaries(options.cacheDir, fileName);
        const { bytes } = await writeTestModel(path, { size, seed, weightType });
        return { ...base, created: true, fileBytes: bytes, elapsedMs: performance.now() - started };
    })();
    inFlight.set(path, promise);
    const forget = (): void => {
        inFlight.delete(path);
    };
    promise.then(forget, forget);
    return promise;
}
