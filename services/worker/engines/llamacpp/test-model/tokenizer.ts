/**
 * A real byte-level BPE tokenizer (GPT-2 style), trained deterministically at
 * build time on a small embedded corpus, in the form llama.cpp reads from GGUF
 * (`tokenizer.ggml.model = "gpt2"`).
 *
 * - Vocabulary: the 256 byte tokens, spelled with GPT-2's byte-to-unicode mapping
 *   and in GPT-2's order (so "!" is 0 and "Ġ", the space byte, is 220), then the
 *   tokens produced by the learned merges, then the special (control) tokens.
 * - Pre-tokenizer: one of two splitting regexes that llama.cpp knows by name
 *   (`tokenizer.ggml.pre`):
 *   - "qwen2" (the `llama` test model): GPT-2's regex except that digits are
 *     split one by one and a word may take one leading non-letter character.
 *     We use it rather than "gpt-2" because llama.cpp enables
 *     `clean_up_tokenization_spaces` for the "gpt-2" (and "default")
 *     pre-tokenizer, which makes detokenize(tokenize(" ,")) lose the space.
 *   - "gpt-4o" (the `gpt-oss` test model, as in gpt-oss's o200k_harmony): splits
 *     words at case changes, keeps contractions on the word and groups digits
 *     by three.
 *   Detokenization is byte-exact with both.
 *
 * Nothing here runs at import time; the byte table and the trained vocabulary are
 * computed on first use.
 */

import { TRAINING_CORPUS } from "./corpus.js";

/** llama.cpp `llama_token_type` values stored in `tokenizer.ggml.token_type`. */
export const TokenType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;
export type TokenType = (typeof TokenType)[keyof typeof TokenType];

/** Special tokens of the ChatML vocabulary, appended after the learned tokens in this order. */
export const CHATML_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] as const;

/**
 * Special tokens of OpenAI's harmony format (gpt-oss), in their o200k_harmony id
 * order without the reserved ones. llama.cpp ends generation on `<|return|>`,
 * `<|call|>` and `<|endoftext|>` (not `<|end|>`, which ends a message, not the turn).
 */
export const HARMONY_SPECIAL_TOKENS = [
  "<|startoftext|>",
  "<|endoftext|>",
  "<|return|>",
  "<|constrain|>",
  "<|channel|>",
  "<|start|>",
  "<|end|>",
  "<|message|>",
  "<|call|>",
] as const;

export const DEFAULT_VOCAB_SIZE = 4096;

/** Values of `tokenizer.ggml.pre` this module implements. */
export type PretokenizerName = "qwen2" | "gpt-4o";

/**
 * Pre-tokenizer regexes: the expressions llama.cpp uses for each
 * `tokenizer.ggml.pre` value, with case-insensitive groups spelled out. For
 * "gpt-4o" it is llama.cpp's rewrite of o200k's regex, in which `(?=\p{L})[^a-z]`
 * stands for an upper-case letter and `(?=\p{L})[^A-Z]` for a lower-case one, so
 * a non-ASCII letter counts as both (llama.cpp collapses each non-ASCII code point
 * to its category before matching).
 */
export const PRETOKENIZE_PATTERNS: Readonly<Record<PretokenizerName, RegExp>> = {
  qwen2:
    /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu,
  "gpt-4o":
    /[^\r\n\p{L}\p{N}]?(?:(?=\p{L})[^a-z])*(?:(?=\p{L})[^A-Z])+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?(?:(?=\p{L})[^a-z])+(?:(?=\p{L})[^A-Z])*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu,
};

/** ChatML template, the form node-llama-cpp recognises as its ChatML chat wrapper. */
export const CHATML_TEMPLATE =
  "{% for message in messages %}" +
  "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}" +
  "{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export interface ByteLevelBpeVocabulary {
  /** Token strings, in id order (byte tokens use the GPT-2 byte-to-unicode spelling). */
  readonly tokens: readonly string[];
  /** `llama_token_type` per token. */
  readonly tokenTypes: readonly TokenType[];
  /** Merges in rank order, each "left right" in byte-to-unicode spelling. */
  readonly merges: readonly string[];
  /** Id of each special token, by its text. */
  readonly specialTokens: Readonly<Record<string, number>>;
  /** The pre-tokenizer the merges were learned with (`tokenizer.ggml.pre`). */
  readonly pretokenizer: PretokenizerName;
}

export interface TrainByteLevelBpeOptions {
  /** Total vocabulary size, special tokens included. Default 4096. */
  readonly vocabSize?: number;
  /** Special (control) tokens, appended in this order. Default {@link CHATML_SPECIAL_TOKENS}. */
  readonly specialTokens?: readonly string[];
  /** Default "qwen2". */
  readonly pretokenizer?: PretokenizerName;
  /** Training text. Default: the embedded {@link TRAINING_CORPUS}. */
  readonly corpus?: string;
  /**
   * Also count, once each, the lower-case and capitalised forms of every corpus
   * word, with and without a leading space (" the", "the", " The", "The"), so a
   * few KB of text fill a ~4k vocabulary with whole words. Default true.
   */
  readonly augmentWordForms?: boolean;
}

let byteTables: { byteToChar: readonly string[]; charToByte: ReadonlyMap<string, number>; byteOrder: readonly number[] } | undefined;

/**
 * GPT-2's byte-to-unicode mapping. `byteOrder[i]` is the byte whose token has id
 * `i`; `byteToChar[b]` is the one-character spelling of byte `b`.
 */
export function gpt2ByteTables(): { byteToChar: readonly string[]; charToByte: ReadonlyMap<string, number>; byteOrder: readonly number[] } {
  if (byteTables != null) return byteTables;
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const isPrintable = new Set(printable);
  const byteOrder = [...printable];
  const byteToChar: string[] = new Array<string>(256);
  for (const b of printable) byteToChar[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (isPrintable.has(b)) continue;
    byteOrder.push(b);
    byteToChar[b] = String.fromCodePoint(256 + n);
    n++;
  }
  const charToByte = new Map<string, number>();
  for (let b = 0; b < 256; b++) charToByte.set(byteToChar[b]!, b);
  byteTables = { byteToChar, charToByte, byteOrder };
  return byteTables;
}

/** Splits text into pre-tokens the way llama.cpp's pre-tokenizer `name` does. */
export function pretokenize(text: string, name: PretokenizerName = "qwen2"): string[] {
  return text.match(PRETOKENIZE_PATTERNS[name]) ?? [];
}

const textEncoder = new TextEncoder();

/** UTF-8 bytes of `text` spelled with the byte-to-unicode mapping. */
export function byteEncode(text: string): string {
  const { byteToChar } = gpt2ByteTables();
  let out = "";
  for (const b of textEncoder.encode(text)) out += byteToChar[b]!;
  return out;
}

// ---------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------

/** Max-heap of (count, pair key) with lazy deletion; ties go to the smaller key. */
class PairHeap {
  private readonly counts: number[] = [];
  private readonly keys: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  private before(i: number, j: number): boolean {
    const ci = this.counts[i]!;
    const cj = this.counts[j]!;
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!);
  }

  private swap(i: number, j: number): void {
    const c = this.counts[i]!;
    this.counts[i] = this.counts[j]!;
    this.counts[j] = c;
    const k = this.keys[i]!;
    this.keys[i] = this.keys[j]!;
    this.keys[j] = k;
  }

  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.keys.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): { count: number; key: number } | undefined {
    const n = this.keys.length;
    if (n === 0) return undefined;
    const top = { count: this.counts[0]!, key: this.keys[0]! };
    const lastCount = this.counts.pop()!;
    const lastKey = this.keys.pop()!;
    if (n > 1) {
      this.counts[0] = lastCount;
      this.keys[0] = lastKey;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < n - 1 && this.before(l, best)) best = l;
        if (r < n - 1 && this.before(r, best)) best = r;
        if (best === i) break;
        this.swap(i, best);
        i = best;
      }
    }
    return top;
  }
}

const PAIR_KEY_BASE = 1 << 20; // token ids stay far below 2^20

/** Vocabularies trained on the default corpus, by their options. */
const defaultCorpusVocabularies = new Map<string, ByteLevelBpeVocabulary>();

/**
 * Trains a byte-level BPE vocabulary of exactly `vocabSize` tokens (special
 * tokens included). Deterministic: the most frequent adjacent pair is merged
 * first; ties go to the pair with the smaller (left id, right id).
 * Throws if the corpus runs out of pairs before the vocabulary is full.
 */
export function trainByteLevelBpe(options: TrainByteLevelBpeOptions = {}): ByteLevelBpeVocabulary {
  const vocabSize = options.vocabSize ?? DEFAULT_VOCAB_SIZE;
  const augment = options.augmentWordForms ?? true;
  const specials = options.specialTokens ?? CHATML_SPECIAL_TOKENS;
  const pretokenizer = options.pretokenizer ?? "qwen2";
  const memoKey = options.corpus == null ? JSON.stringify([vocabSize, augment, specials, pretokenizer]) : undefined;
  const memoised = memoKey == null ? undefined : defaultCorpusVocabularies.get(memoKey);
  if (memoised != null) return memoised;
  const corpus = options.corpus ?? TRAINING_CORPUS;
  if (!Number.isInteger(vocabSize) || vocabSize < 256 + specials.length || vocabSize >= PAIR_KEY_BASE) {
    throw new RangeError(`vocabSize must be an integer in [${256 + specials.length}, ${PAIR_KEY_BASE})`);
  }
  if (new Set(specials).size !== specials.length) throw new RangeError("special tokens must be distinct");
  if (!Object.hasOwn(PRETOKENIZE_PATTERNS, pretokenizer)) throw new RangeError(`unknown pre-tokenizer ${String(pretokenizer)}`);
  const targetNormal = vocabSize - specials.length;

  const { byteToChar, byteOrder } = gpt2ByteTables();
  const tokens: string[] = [];
  const tokenIds = new Map<string, number>();
  const idOfByte = new Array<number>(256);
  for (const b of byteOrder) {
    idOfByte[b] = tokens.length;
    tokenIds.set(byteToChar[b]!, tokens.length);
    tokens.push(byteToChar[b]!);
  }

  // Unique pre-tokens with their frequencies, in first-seen order.
  const wordFreq = new Map<string, number>();
  for (const piece of pretokenize(corpus, pretokenizer)) wordFreq.set(piece, (wordFreq.get(piece) ?? 0) + 1);
  if (augment) {
    for (const piece of [...wordFreq.keys()]) {
      const match = /^ ?(\p{L}+)$/u.exec(piece);
      if (match == null) continue;
      const lower = match[1]!.toLowerCase();
      const capitalised = lower.charAt(0).toUpperCase() + lower.slice(1);
      for (const form of [lower, ` ${lower}`, capitalised, ` ${capitalised}`]) {
        wordFreq.set(form, (wordFreq.get(form) ?? 0) + 1);
      }
    }
  }
  const words: number[][] = [];
  const freqs: number[] = [];
  for (const [piece, freq] of wordFreq) {
    words.push(Array.from(textEncoder.encode(piece), (b) => idOfByte[b]!));
    freqs.push(freq);
  }

  const pairCounts = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  for (let w = 0; w < words.length; w++) {
    const word = words[w]!;
    const f = freqs[w]!;
    for (let i = 0; i + 1 < word.length; i++) {
      const key = word[i]! * PAIR_KEY_BASE + word[i + 1]!;
      pairCounts.set(key, (pairCounts.get(key) ?? 0) + f);
      let set = pairWords.get(key);
      if (set == null) {
        set = new Set();
        pairWords.set(key, set);
      }
      set.add(w);
    }
  }
  const heap = new PairHeap();
  for (const [key, count] of pairCounts) heap.push(count, key);

  const merges: string[] = [];
  const changed = new Set<number>();
  const addCount = (key: number, delta: number): void => {
    const next = (pairCounts.get(key) ?? 0) + delta;
    if (next > 0) pairCounts.set(key, next);
    else pairCounts.delete(key);
    changed.add(key);
  };

  while (tokens.length < targetNormal) {
    const top = heap.pop();
    if (top == null) {
      throw new Error(
        `BPE training ran out of pairs at ${tokens.length} tokens (wanted ${targetNormal}); use a larger corpus or a smaller vocabSize`,
      );
    }
    if (pairCounts.get(top.key) !== top.count) continue; // stale heap entry
    const a = Math.floor(top.key / PAIR_KEY_BASE);
    const b = top.key % PAIR_KEY_BASE;
    const merged = tokens[a]! + tokens[b]!;
    let c = tokenIds.get(merged);
    if (c == null) {
      c = tokens.length;
      tokens.push(merged);
      tokenIds.set(merged, c);
    }
    merges.push(`${tokens[a]!} ${tokens[b]!}`);

    changed.clear();
    for (const w of pairWords.get(top.key) ?? []) {
      const word = words[w]!;
      const f = freqs[w]!;
      let present = false;
      for (let i = 0; i + 1 < word.length; i++) {
        if (word[i] === a && word[i + 1] === b) {
          present = true;
          break;
        }
      }
      if (!present) continue;
      for (let i = 0; i + 1 < word.length; i++) addCount(word[i]! * PAIR_KEY_BASE + word[i + 1]!, -f);
      const next: number[] = [];
      for (let i = 0; i < word.length; ) {
        if (i + 1 < word.length && word[i] === a && word[i + 1] === b) {
          next.push(c);
          i += 2;
        } else {
          next.push(word[i]!);
          i += 1;
        }
      }
      words[w] = next;
      for (let i = 0; i + 1 < next.length; i++) {
        const key = next[i]! * PAIR_KEY_BASE + next[i + 1]!;
        addCount(key, f);
        let set = pairWords.get(key);
        if (set == null) {
          set = new Set();
          pairWords.set(key, set);
        }
        set.add(w);
      }
    }
    pairWords.delete(top.key);
    pairCounts.delete(top.key);
    for (const key of changed) {
      const count = pairCounts.get(key);
      if (count != null) heap.push(count, key);
    }
  }

  const tokenTypes: TokenType[] = tokens.map(() => TokenType.NORMAL);
  const specialTokens: Record<string, number> = {};
  for (const special of specials) {
    if (tokenIds.has(special)) throw new Error(`special token ${special} is also a learned token`);
    specialTokens[special] = tokens.length;
    tokens.push(special);
    tokenTypes.push(TokenType.CONTROL);
  }
  const vocabulary: ByteLevelBpeVocabulary = { tokens, tokenTypes, merges, specialTokens, pretokenizer };
  if (memoKey != null) defaultCorpusVocabularies.set(memoKey, vocabulary);
  return vocabulary;
}

// ---------------------------------------------------------------------------
// Encoding / decoding (a reference implementation of what llama.cpp does with
// the same vocabulary; used by tests to check that both agree)
// ---------------------------------------------------------------------------

const textDecoder = new TextDecoder("utf-8", { fatal: false });

export class ByteLevelBpeTokenizer {
  readonly vocabulary: ByteLevelBpeVocabulary;
  private readonly ids = new Map<string, number>();
  private readonly ranks = new Map<string, number>();
  private readonly cache = new Map<string, readonly number[]>();
  private readonly specialPattern: RegExp;

  constructor(vocabulary: ByteLevelBpeVocabulary) {
    this.vocabulary = vocabulary;
    for (const [id, token] of vocabulary.tokens.entries()) this.ids.set(token, id);
    for (const [rank, merge] of vocabulary.merges.entries()) this.ranks.set(merge, rank);
    const escaped = Object.keys(vocabulary.specialTokens).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    this.specialPattern = new RegExp(`(${escaped.join("|")})`);
  }

  /**
   * Text to token ids. With `specialTokens`, the text of a special token becomes
   * that token; otherwise it is tokenized as plain text. No BOS is added.
   */
  encode(text: string, options: { specialTokens?: boolean } = {}): number[] {
    const out: number[] = [];
    const parts = options.specialTokens ? text.split(this.specialPattern) : [text];
    parts.forEach((part, index) => {
      if (options.specialTokens && index % 2 === 1) {
        out.push(this.vocabulary.specialTokens[part]!);
        return;
      }
      for (const piece of pretokenize(part, this.vocabulary.pretokenizer)) out.push(...this.encodePiece(piece));
    });
    return out;
  }

  /** Token ids to text (special tokens are rendered as their text). */
  decode(ids: readonly number[]): string {
    const { charToByte } = gpt2ByteTables();
    const bytes: number[] = [];
    let text = "";
    const flush = (): void => {
      if (bytes.length > 0) text += textDecoder.decode(Uint8Array.from(bytes));
      bytes.length = 0;
    };
    for (const id of ids) {
      const token = this.vocabulary.tokens[id];
      if (token == null) throw new RangeError(`token id ${id} is out of range`);
      if (this.vocabulary.tokenTypes[id] === TokenType.CONTROL) {
        flush();
        text += token;
        continue;
      }
      for (const ch of token) bytes.push(charToByte.get(ch)!);
    }
    flush();
    return text;
  }

  private encodePiece(piece: string): readonly number[] {
    const cached = this.cache.get(piece);
    if (cached != null) return cached;
    let symbols = Array.from(byteEncode(piece));
    while (symbols.length > 1) {
      let bestRank = Infinity;
      let bestLeft = "";
      let bestRight = "";
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = this.ranks.get(`${symbols[i]!} ${symbols[i + 1]!}`);
        if (rank != null && rank < bestRank) {
          bestRank = rank;
          bestLeft = symbols[i]!;
          bestRight = symbols[i + 1]!;
        }
      }
      if (bestRank === Infinity) break;
      const next: string[] = [];
      for (let i = 0; i < symbols.length; ) {
        if (i + 1 < symbols.length && symbols[i] === bestLeft && symbols[i + 1] === bestRight) {
          next.push(bestLeft + bestRight);
          i += 2;
        } else {
          next.push(symbols[i]!);
          i += 1;
        }
      }
      symbols = next;
    }
    const ids = symbols.map((s) => {
      const id = this.ids.get(s);
      if (id == null) throw new Error(`BPE produced a symbol missing from the vocabulary: ${JSON.stringify(s)}`);
      return id;
    });
    if (this.cache.size < 10_000) this.cache.set(piece, ids);
    return ids;
  }
}
