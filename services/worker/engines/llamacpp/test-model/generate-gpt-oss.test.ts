import test from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  HarmonyChatWrapper,
  LlamaChat,
  LlamaCompletion,
  resolveChatWrapper,
  TokenBias,
  type ChatHistoryItem,
  type Token,
} from "node-llama-cpp";
import { countActiveTestModelParameters, countTestModelParameters, ensureTestModel, TEST_MODEL_HYPERPARAMETERS } from "./generate.js";
import { readGgufHeader } from "./gguf-writer.js";
import { loadWithWarnings } from "./load-with-warnings.js";
import { ByteLevelBpeTokenizer, HARMONY_SPECIAL_TOKENS, trainByteLevelBpe } from "./tokenizer.js";
import { TRAINING_CORPUS } from "./corpus.js";

async function tempDir(t: test.TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "infermesh-test-model-gpt-oss-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** What llama.cpp logs, as warnings, for every gpt-oss vocabulary (the real one included). */
const EXPECTED_LOAD_WARNING =
  /setting token '<\|(constrain|start|channel|message)\|>' \(\d+\) attribute to USER_DEFINED|removing '<\|end\|>' token from EOG list/;

test("gpt-oss sizes: a mixture of experts of which a fraction runs per token", () => {
  const { tiny, small, medium } = TEST_MODEL_HYPERPARAMETERS["gpt-oss"];
  const total = countTestModelParameters(small);
  const active = countActiveTestModelParameters(small);
  assert.ok(total >= 10e6 && total <= 30e6, `small: ${total}`);
  assert.ok(active < total / 1.5, `small: ${active} of ${total} active`);
  assert.ok(countTestModelParameters(tiny) < total && total < countTestModelParameters(medium));
  for (const h of [tiny, small, medium]) {
    assert.ok(h.expertUsedCount < h.expertCount);
    assert.ok(h.slidingWindow < h.contextLength);
  }
});

test("tiny gpt-oss test model: llama.cpp loads it and node-llama-cpp chats with it in the harmony format", async (t) => {
  const dir = await tempDir(t);
  const built = await ensureTestModel({ cacheDir: dir, architecture: "gpt-oss", size: "tiny", seed: 7 });
  const h = TEST_MODEL_HYPERPARAMETERS["gpt-oss"].tiny;
  const ids = built.specialTokens;
  t.diagnostic(
    `built tiny gpt-oss model (${built.parameterCount} parameters, ${built.activeParameterCount} active, ${built.fileBytes} bytes) in ${built.elapsedMs.toFixed(0)} ms`,
  );
  assert.equal(built.architecture, "gpt-oss");
  assert.equal(built.parameterCount, countTestModelParameters(h));
  assert.equal(built.activeParameterCount, countActiveTestModelParameters(h));

  await t.test("GGUF metadata and tensors are those of gpt-oss", async () => {
    const header = readGgufHeader(await readFile(built.path));
    const m = header.metadata;
    assert.equal(m["general.architecture"], "gpt-oss");
    assert.equal(m["gpt-oss.expert_count"], h.expertCount);
    assert.equal(m["gpt-oss.expert_used_count"], h.expertUsedCount);
    assert.equal(m["gpt-oss.expert_feed_forward_length"], h.expertFeedForwardLength);
    assert.equal(m["gpt-oss.attention.sliding_window"], h.slidingWindow);
    assert.equal(m["gpt-oss.rope.scaling.type"], "yarn");
    assert.equal(m["tokenizer.ggml.pre"], "gpt-4o");
    assert.equal(m["tokenizer.ggml.eos_token_id"], ids.byText["<|return|>"]);
    const names = new Set(header.tensors.map((ti) => ti.name));
    for (const name of [
      "attn_sinks.weight",
      "attn_q.bias",
      "attn_output.bias",
      "ffn_gate_inp.bias",
      "ffn_down_exps.bias",
      "post_attention_norm.weight",
    ]) {
      assert.ok(names.has(`blk.0.${name}`), name);
    }
    const experts = header.tensors.find((ti) => ti.name === "blk.0.ffn_up_exps.weight");
    assert.deepEqual(experts?.shape, [h.embeddingLength, h.expertFeedForwardLength, h.expertCount]);
    assert.equal(
      header.tensors.reduce((n, ti) => n + ti.shape.reduce((a, b) => a * b, 1), 0),
      built.parameterCount,
    );
  });

  const { llama, model, loadWarnings } = await loadWithWarnings(built.path);
  t.after(() => llama.dispose());
  const sequenceCount = 3;
  const context = await model.createContext({ contextSize: 512 * sequenceCount, sequences: sequenceCount, threads: 1 });
  const sequences = Array.from({ length: sequenceCount }, () => context.getSequence());
  const sequence = sequences[0]!;
  t.afterEach(async () => {
    for (const each of sequences) await each.clearHistory();
  });

  await t.test("llama.cpp loads it as gpt-oss: sliding window, harmony end-of-generation tokens", () => {
    assert.deepEqual(
      loadWarnings.filter((message) => !EXPECTED_LOAD_WARNING.test(message)),
      [],
    );
    assert.equal(model.fileInsights.swaSize, h.slidingWindow);
    assert.equal(model.tokens.bos, ids.bos);
    assert.equal(model.tokens.eos, ids.byText["<|return|>"]);
    for (let token = 0; token < h.vocabSize; token++) {
      assert.equal(model.isEogToken(token as Token), ids.endOfGeneration.includes(token), `token ${token}`);
    }
    assert.equal(model.isEogToken(ids.byText["<|end|>"] as Token), false, "<|end|> ends a message, not the turn");
    assert.equal(model.tokens.eot, ids.byText["<|endoftext|>"], "as llama.cpp finds it in gpt-oss-20b");
  });

  await t.test("llama.cpp's BPE (gpt-4o pre-tokenizer) matches the reference tokenizer; text round-trips", () => {
    const reference = new ByteLevelBpeTokenizer(trainByteLevelBpe({ specialTokens: HARMONY_SPECIAL_TOKENS, pretokenizer: "gpt-4o" }));
    const text = `${TRAINING_CORPUS}\nGrüße aus Köln! 東京 123456 🙂 I'M HERE, You'RE there. XMLHttpRequest  \r\n`;
    assert.deepEqual(Array.from(model.tokenize(text), Number), reference.encode(text));
    assert.equal(model.detokenize(model.tokenize(text)), text);
    for (const special of HARMONY_SPECIAL_TOKENS) {
      assert.deepEqual(Array.from(model.tokenize(special, true), Number), [ids.byText[special]], special);
    }
  });

  await t.test("raw completion generates tokens and stops at maxTokens", async () => {
    const completion = new LlamaCompletion({ contextSequence: sequence });
    const prompt = "Once upon a time";
    const result = await completion.generateCompletionWithMeta(prompt, { maxTokens: 8 });
    assert.equal(result.metadata.stopReason, "maxTokens");
    assert.ok(result.response.length > 0);
    const held = model.detokenize(sequence.contextTokens);
    assert.ok(held.startsWith(prompt), JSON.stringify(held));
    completion.dispose();
  });

  const chatWrapper = resolveChatWrapper(model);

  await t.test("the chat template resolves to node-llama-cpp's HarmonyChatWrapper", () => {
    assert.ok(chatWrapper instanceof HarmonyChatWrapper, chatWrapper.wrapperName);
  });

  await t.test("chat on several sequences at once; each reply stops at maxTokens", async () => {
    const maxTokens = 12;
    const replies = await Promise.all(
      sequences.map(async (sequence, index) => {
        const chat = new LlamaChat({ contextSequence: sequence, chatWrapper });
        let generatedTokens = 0;
        const history: ChatHistoryItem[] = [
          { type: "system", text: "You are a helpful assistant." },
          { type: "user", text: `Question number ${index}: what is the weather like today?` },
          { type: "model", response: [] },
        ];
        const result = await chat.generateResponse(history, {
          maxTokens,
          onToken: (tokens) => {
            generatedTokens += tokens.length;
          },
        });
        const prompt = model.detokenize(sequence.contextTokens, true);
        chat.dispose();
        return { result, generatedTokens, prompt };
      }),
    );
    for (const { result, generatedTokens, prompt } of replies) {
      assert.equal(result.metadata.stopReason, "maxTokens");
      assert.ok(generatedTokens > 0 && generatedTokens <= maxTokens, `${generatedTokens} tokens`);
      assert.match(
        prompt,
        /^<\|start\|>system<\|message\|>[\s\S]*<\|end\|><\|start\|>user<\|message\|>Question number \d[\s\S]*<\|end\|><\|start\|>assistant/,
      );
    }
  });

  await t.test("reasoning: text generated in the analysis channel comes out as a thought segment", async () => {
    const chat = new LlamaChat({ contextSequence: sequence, chatWrapper });
    const segmentTypes: (string | undefined)[] = [];
    // The random model never opens a channel by itself, so the reply starts inside one.
    const history: ChatHistoryItem[] = [
      { type: "user", text: "Why is the sky blue?" },
      { type: "model", response: [{ type: "segment", segmentType: "thought", text: "Let me think.", ended: false }] },
    ];
    const result = await chat.generateResponse(history, {
      maxTokens: 6,
      onResponseChunk: (chunk) => {
        segmentTypes.push(chunk.type === "segment" ? chunk.segmentType : undefined);
      },
    });
    assert.equal(result.metadata.stopReason, "maxTokens");
    assert.ok(segmentTypes.length > 0);
    assert.ok(
      segmentTypes.every((type) => type === "thought"),
      JSON.stringify(segmentTypes),
    );
    assert.match(model.detokenize(sequence.contextTokens, true), /<\|start\|>assistant<\|channel\|>analysis<\|message\|>Let me think\./);
    chat.dispose();
  });

  await t.test("a reply ends at <|return|>", async () => {
    const chat = new LlamaChat({ contextSequence: sequence, chatWrapper });
    const onlyReturn = new TokenBias(model.tokenizer);
    for (let token = 0; token < h.vocabSize; token++) {
      if (token !== ids.byText["<|return|>"]) onlyReturn.set(token as Token, "never");
    }
    const result = await chat.generateResponse(
      [
        { type: "user", text: "Say nothing." },
        { type: "model", response: [] },
      ],
      {
        maxTokens: 8,
        tokenBias: onlyReturn,
      },
    );
    assert.equal(result.metadata.stopReason, "eogToken");
    assert.equal(result.response, "");
    chat.dispose();
  });
});
