import test from "node:test";
import assert from "node:assert/strict";
import { TRAINING_CORPUS } from "./corpus.js";
import {
  ByteLevelBpeTokenizer,
  byteEncode,
  gpt2ByteTables,
  CHATML_SPECIAL_TOKENS,
  HARMONY_SPECIAL_TOKENS,
  pretokenize,
  TokenType,
  trainByteLevelBpe,
} from "./tokenizer.js";

test("GPT-2 byte-to-unicode table", () => {
  const { byteToChar, charToByte, byteOrder } = gpt2ByteTables();
  assert.equal(new Set(byteToChar).size, 256);
  assert.equal(charToByte.size, 256);
  assert.deepEqual(
    [...byteOrder].sort((a, b) => a - b),
    Array.from({ length: 256 }, (_, i) => i),
  );
  assert.equal(byteToChar[0x21], "!");
  assert.equal(byteOrder[0], 0x21); // "!" is token 0, as in GPT-2
  assert.equal(byteToChar[0x20], "Ġ");
  assert.equal(byteOrder[220], 0x20); // "Ġ" is token 220, as in GPT-2
  assert.equal(byteToChar[0x0a], "Ċ");
  assert.equal(byteEncode(" héllo\n"), "ĠhÃ©lloĊ");
});

test("pre-tokenizer splits like Qwen2's regex", () => {
  assert.deepEqual(pretokenize("Hello, world! It's 2024.\n\nOK  go"), [
    "Hello",
    ",",
    " world",
    "!",
    " It",
    "'s",
    " ",
    "2",
    "0",
    "2",
    "4",
    ".\n\n",
    "OK",
    " ",
    " go",
  ]);
  assert.deepEqual(pretokenize("(hi) don'T"), ["(hi", ")", " don", "'T"]);
});

test('pre-tokenizer splits like gpt-oss\'s (o200k, llama.cpp "gpt-4o")', () => {
  assert.deepEqual(pretokenize("Hello, world! It's 2024.\n\nOK  go", "gpt-4o"), [
    "Hello",
    ",",
    " world",
    "!",
    " It's",
    " ",
    "202",
    "4",
    ".\n\n",
    "OK",
    " ",
    " go",
  ]);
  // words split at case changes; contractions stay on the word; digits go by three
  assert.deepEqual(pretokenize("HelloWorld XMLHttpRequest DON'T 1234567 a/b\n/c", "gpt-4o"), [
    "Hello",
    "World",
    " XMLHttp",
    "Request",
    " DON'T",
    " ",
    "123",
    "456",
    "7",
    " a",
    "/b",
    "\n",
    "/c",
  ]);
  // a non-ASCII letter counts as both cases, as in llama.cpp (o200k itself keeps "ÉCOLE" whole)
  assert.deepEqual(pretokenize("ÉCOLE élève", "gpt-4o"), ["É", "COLE", " élève"]);
});

test("training is deterministic, fast, and yields a consistent vocabulary", (t) => {
  const started = performance.now();
  const vocab = trainByteLevelBpe({ corpus: TRAINING_CORPUS, vocabSize: 4096 });
  const elapsed = performance.now() - started;
  t.diagnostic(`trained 4096-token vocabulary in ${elapsed.toFixed(0)} ms`);
  assert.ok(elapsed < 10_000, `training took ${elapsed} ms`);

  const again = trainByteLevelBpe({ corpus: TRAINING_CORPUS, vocabSize: 4096 });
  assert.deepEqual(again.merges, vocab.merges);
  assert.deepEqual(again.tokens, vocab.tokens);

  assert.equal(vocab.tokens.length, 4096);
  assert.equal(vocab.tokenTypes.length, 4096);
  assert.equal(new Set(vocab.tokens).size, 4096, "token strings are unique");
  assert.deepEqual(vocab.tokens.slice(-3), [...CHATML_SPECIAL_TOKENS]);
  assert.equal(vocab.pretokenizer, "qwen2");
  assert.deepEqual(vocab.specialTokens, { "<|endoftext|>": 4093, "<|im_start|>": 4094, "<|im_end|>": 4095 });
  assert.ok(vocab.tokenTypes.slice(0, 4093).every((type) => type === TokenType.NORMAL));
  assert.ok(vocab.tokenTypes.slice(4093).every((type) => type === TokenType.CONTROL));

  // every merge joins two existing tokens into an existing token, and merges are unique
  const known = new Set(vocab.tokens);
  assert.equal(new Set(vocab.merges).size, vocab.merges.length);
  for (const merge of vocab.merges) {
    const parts = merge.split(" ");
    assert.equal(parts.length, 2, merge);
    assert.ok(known.has(parts[0]!) && known.has(parts[1]!) && known.has(parts[0]! + parts[1]!), merge);
  }
  // the default vocabulary is the same one, memoised
  assert.deepEqual(trainByteLevelBpe().merges, vocab.merges);
  assert.equal(trainByteLevelBpe(), trainByteLevelBpe());
});

test("tokenizer: common words are single tokens, text round-trips", () => {
  const vocab = trainByteLevelBpe();
  const tokenizer = new ByteLevelBpeTokenizer(vocab);
  for (const word of [" the", " and", "Hello", " world", " you", " weather", " assistant", " question", "The", " is"]) {
    assert.equal(tokenizer.encode(word).length, 1, JSON.stringify(word));
  }
  const sentence = "The assistant answered the question about the weather in Paris.";
  const ids = tokenizer.encode(sentence);
  assert.ok(ids.length <= 12, `${ids.length} tokens`);
  assert.equal(tokenizer.decode(ids), sentence);

  const unusual = "Grüße aus Köln! 東京 123 🙂\n\n\tend  ";
  const unusualIds = tokenizer.encode(unusual);
  assert.equal(tokenizer.decode(unusualIds), unusual);
  assert.ok(unusualIds.length < Buffer.byteLength(unusual));
});

test("tokenizer: special tokens are parsed only when asked", () => {
  const vocab = trainByteLevelBpe();
  const tokenizer = new ByteLevelBpeTokenizer(vocab);
  const text = "<|im_start|>user\nHi<|im_end|>";
  const withSpecial = tokenizer.encode(text, { specialTokens: true });
  assert.equal(withSpecial[0], vocab.specialTokens["<|im_start|>"]);
  assert.equal(withSpecial.at(-1), vocab.specialTokens["<|im_end|>"]);
  assert.equal(tokenizer.decode(withSpecial), text);
  const plain = tokenizer.encode(text);
  assert.ok(!plain.includes(vocab.specialTokens["<|im_end|>"]!));
  assert.equal(tokenizer.decode(plain), text);
});

test("harmony vocabulary: gpt-4o merges, the harmony special tokens last, text round-trips", () => {
  const vocab = trainByteLevelBpe({ specialTokens: HARMONY_SPECIAL_TOKENS, pretokenizer: "gpt-4o" });
  assert.equal(trainByteLevelBpe({ specialTokens: HARMONY_SPECIAL_TOKENS, pretokenizer: "gpt-4o" }), vocab, "memoised");
  assert.equal(vocab.pretokenizer, "gpt-4o");
  assert.equal(vocab.tokens.length, 4096);
  const first = 4096 - HARMONY_SPECIAL_TOKENS.length;
  assert.deepEqual(vocab.tokens.slice(first), [...HARMONY_SPECIAL_TOKENS]);
  assert.equal(vocab.specialTokens["<|return|>"], first + HARMONY_SPECIAL_TOKENS.indexOf("<|return|>"));
  assert.ok(vocab.tokenTypes.slice(first).every((type) => type === TokenType.CONTROL));
  assert.notDeepEqual(vocab.merges, trainByteLevelBpe().merges, "merges depend on the pre-tokenizer");

  const tokenizer = new ByteLevelBpeTokenizer(vocab);
  for (const word of [" the", " weather", " don't", "Hello"]) {
    assert.equal(tokenizer.encode(word).length, 1, JSON.stringify(word));
  }
  const text = "<|start|>user<|message|>Grüße aus Köln! 12345 🙂<|end|><|start|>assistant";
  const ids = tokenizer.encode(text, { specialTokens: true });
  assert.equal(ids[0], vocab.specialTokens["<|start|>"]);
  assert.equal(ids.at(-2), vocab.specialTokens["<|start|>"]);
  assert.equal(tokenizer.decode(ids), text);
});

test("training fails loudly when the corpus cannot fill the vocabulary", () => {
  assert.throws(() => trainByteLevelBpe({ corpus: "tiny corpus", vocabSize: 1024 }), /ran out of pairs/);
  assert.throws(() => trainByteLevelBpe({ vocabSize: 100 }), RangeError);
  assert.throws(() => trainByteLevelBpe({ specialTokens: ["<|a|>", "<|a|>"] }), RangeError);
  assert.throws(() => trainByteLevelBpe({ pretokenizer: "gpt-2" as "qwen2" }), RangeError);
});
