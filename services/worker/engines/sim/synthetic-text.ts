import { prefixBlockChars } from "../../../common/prefix-hash.js";
import { EngineError } from "../engine.js";

/**
 * The sim's tokenizer and word pieces. A token is 4 characters of text, counted from
 * the start, so a 64-character prefix-hash block is exactly one 16-token KV block.
 * Text of tabs, newlines, the canonical prompt's separators and printable ASCII maps
 * to ids that decode back to it (everything the sim generates is such text); 4
 * characters holding anything else get an opaque id that detokenize refuses.
 */

export const charsPerToken = 4;

/** Tokens per KV block: one prefix-hash block of the canonical prompt. */
export const blockTokens = prefixBlockChars / charsPerToken;

const alphabet = `\t\n\u001e\u001f${Array.from({ length: 95 }, (_, index) => String.fromCharCode(32 + index)).join("")}`;
const base = alphabet.length;
const digitOf = new Map([...alphabet].map((char, index) => [char, index]));
/** First id of the pieces of each length 1..4. */
const offsets = [0, base, base + base ** 2, base + base ** 2 + base ** 3];
/** Ids below this decode to text; ids from it on are opaque hashes. */
export const reversibleTokenLimit = offsets[3]! + base ** 4;

/** Tokens of `text` as the sim counts them. */
export function countTokens(text: string): number {
  return Math.ceil(text.length / charsPerToken);
}

/** The id of one piece of 1 to 4 characters. */
export function tokenId(piece: string): number {
  let id = 0;
  for (let index = piece.length - 1; index >= 0; index -= 1) {
    const digit = digitOf.get(piece[index]!);
    if (digit === undefined) return reversibleTokenLimit + (hashText(piece) & 0x3fff_ffff);
    id = id * base + digit;
  }
  return offsets[piece.length - 1]! + id;
}

export function tokenize(text: string): number[] {
  const ids: number[] = [];
  for (let start = 0; start < text.length; start += charsPerToken) ids.push(tokenId(text.slice(start, start + charsPerToken)));
  return ids;
}

/** The text of `ids`; EngineError "invalid_argument" for an id that does not decode. */
export function detokenize(ids: readonly number[]): string {
  let text = "";
  for (const [index, id] of ids.entries()) {
    if (!Number.isInteger(id) || id < 0 || id >= reversibleTokenLimit) {
      throw new EngineError("invalid_argument", `tokens[${index}] = ${id} is not a token of the sim's vocabulary`);
    }
    let length = 4;
    while (id < offsets[length - 1]!) length -= 1;
    let rest = id - offsets[length - 1]!;
    for (let position = 0; position < length; position += 1) {
      text += alphabet[rest % base];
      rest = Math.floor(rest / base);
    }
  }
  return text;
}

/**
 * The word pieces the sim writes, one token each: a space and a three-letter word, or a
 * word with punctuation. Readable enough to eyeball a stream, meaningless on purpose.
 */
export const wordPieces: readonly string[] = [
  ..."the and for are but not you all any can had her was one our out day get has him his how man new now old see two way who boy did its let put say she too use far few big end own try ask men run set why yes yet act add age ago air arm art bad bed bit box bus buy car cat cut dog dry due eat egg eye fit fly fun gas hat hit hot ice job key kid lay law leg lie lot low map mix net nor odd oil pay pen pie pop raw red row sea sit six sky son sun tax tea ten tie tip top toy war wet win gpu sim kv"
    .split(" ")
    .map((word) => ` ${word.padEnd(3, " ")}`),
  " ok.",
  " so,",
  " no.",
  " up,",
];

/** A 32-bit hash of `text` (FNV-1a), seeded. */
export function hashText(text: string, seed = 0): number {
  let hash = (0x811c9dc5 ^ seed) >>> 0;
  for (let index = 0; index < text.length; index += 1) hash = Math.imul(hash ^ text.charCodeAt(index), 0x01000193) >>> 0;
  return hash;
}
