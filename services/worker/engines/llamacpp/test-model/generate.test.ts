import test from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { ChatMLChatWrapper, LlamaChatSession, TokenBias, type Token } from "node-llama-cpp";
import {
  countActiveTestModelParameters,
  countTestModelParameters,
  DEFAULT_TEST_MODEL_ARCHITECTURE,
  ensureTestModel,
  TEST_MODEL_FORMAT_VERSION,
  TEST_MODEL_HYPERPARAMETERS,
  testModelFileName,
} from "./generate.js";
import { readGgufHeader } from "./gguf-writer.js";
import { loadWithWarnings } from "./load-with-warnings.js";
import { ByteLevelBpeTokenizer, trainByteLevelBpe } from "./tokenizer.js";
import { TRAINING_CORPUS } from "./corpus.js";

async function tempDir(t: test.TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "infermesh-test-model-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test("model sizes have the intended parameter counts", () => {
  const llama = TEST_MODEL_HYPERPARAMETERS.llama;
  const tiny = countTestModelParameters(llama.tiny);
  const small = countTestModelParameters(llama.small);
  const medium = countTestModelParameters(llama.medium);
  assert.ok(tiny >= 2e6 && tiny <= 5e6, `tiny: ${tiny}`);
  assert.ok(small >= 10e6 && small <= 15e6, `small: ${small}`);
  assert.ok(medium >= 25e6 && medium <= 30e6, `medium: ${medium}`);
  assert.equal(countActiveTestModelParameters(llama.small), small, "a dense model uses all its parameters");
});

test("the default test model is gpt-oss", () => {
  assert.equal(DEFAULT_TEST_MODEL_ARCHITECTURE, "gpt-oss");
  assert.equal(testModelFileName({ size: "tiny" }), testModelFileName({ architecture: "gpt-oss", size: "tiny" }));
});

test("cache file names encode architecture, size, seed, weight type and format version", () => {
  const name = testModelFileName({ architecture: "llama", size: "tiny", seed: 7 });
  assert.match(name, new RegExp(`^infermesh-test-model-llama-tiny-seed7-f32-v${TEST_MODEL_FORMAT_VERSION}-[0-9a-f]{8}\\.gguf$`));
  assert.equal(testModelFileName({ architecture: "llama", size: "tiny", seed: 7 }), name);
  assert.notEqual(testModelFileName({ architecture: "llama", size: "tiny", seed: 8 }), name);
  assert.notEqual(testModelFileName({ architecture: "llama", size: "small", seed: 7 }), name);
  assert.notEqual(testModelFileName({ architecture: "llama", size: "tiny", seed: 7, weightType: "f16" }), name);
  assert.notEqual(testModelFileName({ architecture: "gpt-oss", size: "tiny", seed: 7 }), name);
  assert.throws(() => testModelFileName({ seed: -1 }), RangeError);
  assert.throws(() => testModelFileName({ seed: 1.5 }), RangeError);
});

test("ensureTestModel rejects bad options", async () => {
  await assert.rejects(ensureTestModel({ cacheDir: tmpdir(), seed: 2 ** 32 }), RangeError);
  await assert.rejects(ensureTestModel({ cacheDir: tmpdir(), size: "huge" as "tiny" }), RangeError);
  await assert.rejects(ensureTestModel({ cacheDir: tmpdir(), architecture: "mamba" as "llama" }), RangeError);
});

test("tiny llama test model: builds, is cached, is deterministic, and llama.cpp runs it", async (t) => {
  const dir = await tempDir(t);
  const seed = 7;
  const tiny = { architecture: "llama", size: "tiny", seed } as const;
  const h = TEST_MODEL_HYPERPARAMETERS.llama.tiny;

  // Concurrent calls share one build.
  const [first, concurrent] = await Promise.all([ensureTestModel({ cacheDir: dir, ...tiny }), ensureTestModel({ cacheDir: dir, ...tiny })]);
  t.diagnostic(`built tiny model (${first.parameterCount} parameters, ${first.fileBytes} bytes) in ${first.elapsedMs.toFixed(0)} ms`);
  assert.equal(first.created, true);
  assert.equal(concurrent.path, first.path);
  assert.equal(basename(first.path), testModelFileName(tiny));
  assert.equal(first.architecture, "llama");
  assert.equal(first.parameterCount, countTestModelParameters(h));
  assert.deepEqual(await readdir(dir), [first.fileName], "no temporary files are left behind");

  const second = await ensureTestModel({ cacheDir: dir, ...tiny });
  assert.equal(second.created, false);
  assert.equal(second.path, first.path);
  assert.equal(second.fileBytes, first.fileBytes);
  assert.equal(second.parameterCount, first.parameterCount);

  const bytes = await readFile(first.path);
  assert.equal(bytes.length, first.fileBytes);

  await t.test("same seed gives identical bytes; another seed gives other weights", async (t) => {
    const otherDir = await tempDir(t);
    const rebuilt = await ensureTestModel({ cacheDir: otherDir, ...tiny });
    assert.equal(rebuilt.created, true);
    const digest = (b: Buffer): string => createHash("sha256").update(b).digest("hex");
    assert.equal(digest(await readFile(rebuilt.path)), digest(bytes));
    const reseeded = await ensureTestModel({ cacheDir: otherDir, ...tiny, seed: seed + 1 });
    assert.notEqual(reseeded.path, rebuilt.path);
    assert.notEqual(digest(await readFile(reseeded.path)), digest(bytes));
  });

  await t.test("GGUF header and metadata", () => {
    const header = readGgufHeader(bytes);
    assert.equal(header.version, 3);
    assert.equal(header.alignment, 32);
    assert.equal(header.tensorCount, 3 + 9 * h.blockCount);
    assert.equal(header.dataOffset % 32, 0);
    const m = header.metadata;
    assert.equal(m["general.architecture"], "llama");
    assert.equal(m["general.name"], "infermesh-test-model");
    assert.equal(m["infermesh.test_model.random_weights"], true);
    assert.equal(m["infermesh.test_model.seed"], seed);
    assert.equal(m["llama.embedding_length"], h.embeddingLength);
    assert.equal(m["llama.block_count"], h.blockCount);
    assert.equal(m["llama.attention.head_count_kv"], h.headCountKv);
    assert.equal(m["llama.rope.dimension_count"], h.embeddingLength / h.headCount);
    assert.equal(m["tokenizer.ggml.model"], "gpt2");
    assert.equal(m["tokenizer.ggml.add_bos_token"], false);
    assert.equal((m["tokenizer.ggml.tokens"] as string[]).length, h.vocabSize);
    const parameters = header.tensors.reduce((n, ti) => n + ti.shape.reduce((a, b) => a * b, 1), 0);
    assert.equal(parameters, first.parameterCount);
    for (const ti of header.tensors) assert.equal(ti.offset % 32, 0, ti.name);
  });

  // ---- llama.cpp ----
  const { llama, model, loadWarnings } = await loadWithWarnings(first.path);
  t.after(() => llama.dispose());
  const context = await model.createContext({ contextSize: 512, threads: 1 });
  const sequence = context.getSequence();
  const ids = first.specialTokens;

  await t.test("llama.cpp loads the model without warnings", () => {
    assert.deepEqual(loadWarnings, []);
    assert.equal(model.tokens.bos, ids.bos);
    assert.equal(model.tokens.eos, ids.byText["<|im_end|>"]);
    assert.equal(model.isEogToken(ids.byText["<|im_end|>"] as Token), true);
    assert.equal(model.isEogToken(ids.byText["<|endoftext|>"] as Token), true);
    assert.equal(model.isEogToken(ids.byText["<|im_start|>"] as Token), false);
    for (let token = 0; token < h.vocabSize; token++) {
      assert.equal(model.isEogToken(token as Token), ids.endOfGeneration.includes(token), `token ${token}`);
    }
  });

  await t.test("tokenize → detokenize round-trips with fewer tokens than bytes", () => {
    const sentence = "The quick brown fox jumps over the lazy dog, and the weather today is warm and sunny.";
    const tokens = model.tokenize(sentence);
    assert.ok(tokens.length < Buffer.byteLength(sentence) / 2, `${tokens.length} tokens for ${Buffer.byteLength(sentence)} bytes`);
    assert.equal(model.detokenize(tokens), sentence);
    const unusual = "Grüße , 東京 ! 12345 🙂\n\n\tdon't  stop ";
    assert.equal(model.detokenize(model.tokenize(unusual)), unusual);
  });

  await t.test("llama.cpp's BPE matches the reference tokenizer on the whole corpus", () => {
    const reference = new ByteLevelBpeTokenizer(trainByteLevelBpe());
    const text = `${TRAINING_CORPUS}\nGrüße aus Köln! 東京 123456 🙂 I'M HERE, You'RE there.  \r\n`;
    assert.deepEqual(Array.from(model.tokenize(text), Number), reference.encode(text));
  });

  await t.test("<|im_end|> is one special token only when special tokens are enabled", () => {
    assert.deepEqual(Array.from(model.tokenize("<|im_end|>", true), Number), [ids.byText["<|im_end|>"]]);
    assert.deepEqual(Array.from(model.tokenize("<|im_start|>", true), Number), [ids.byText["<|im_start|>"]]);
    assert.ok(model.tokenize("<|im_end|>", false).length > 1);
    assert.equal(model.detokenize(model.tokenize("<|im_end|>", true), true), "<|im_end|>");
  });

  await t.test("raw sequence evaluation generates tokens", async () => {
    const prompt = model.tokenize("Once upon a time");
    const generated: number[] = [];
    for await (const token of sequence.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
      generated.push(token);
      if (generated.length >= 16) break;
    }
    assert.equal(generated.length, 16);
    assert.ok(generated.every((token) => token >= 0 && token < h.vocabSize));
    await sequence.clearHistory();
  });

  await t.test("chat: ChatML wrapper is picked from the template; replies come out and stop at end-of-generation", async () => {
    const session = new LlamaChatSession({ contextSequence: sequence, autoDisposeSequence: false });
    assert.ok(session.chatWrapper instanceof ChatMLChatWrapper, session.chatWrapper.wrapperName);

    let tokenCount = 0;
    const reply = await session.promptWithMeta("Hello! How are you today?", {
      maxTokens: 16,
      onToken: (tokens) => {
        tokenCount += tokens.length;
      },
    });
    assert.ok(tokenCount > 0, "the model produced tokens");
    assert.ok(reply.responseText.length > 0);

    // Forbid every token except the end-of-generation ones: the reply must end at once.
    const onlyEndOfGeneration = new TokenBias(model.tokenizer);
    for (let token = 0; token < h.vocabSize; token++) {
      if (!model.isEogToken(token as Token)) onlyEndOfGeneration.set(token as Token, "never");
    }
    session.resetChatHistory();
    const stopped = await session.promptWithMeta("Say nothing.", { maxTokens: 16, tokenBias: onlyEndOfGeneration });
    assert.equal(stopped.stopReason, "eogToken");
    assert.equal(stopped.responseText, "");
    session.dispose({ disposeSequence: false });
  });
});
