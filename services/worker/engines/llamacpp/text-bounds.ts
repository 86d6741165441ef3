import { EngineError } from "../engine.js";

/**
 * Longest run of characters of one kind (letters, digits, whitespace, or other
 * symbols) a text may hold on its way into llama.cpp's tokenizer.
 *
 * Why: llama.cpp splits text into pre-tokens with the model's regex, and for
 * pre-tokenizers it has no hand-written splitter for (gpt-oss's o200k among them) it
 * falls back to libstdc++'s std::regex, whose matcher recurses once per character of a
 * match. A single run of about 24,000 letters, spaces or punctuation marks overflows an
 * 8 MiB thread stack and kills the process with SIGSEGV (measured on the test model;
 * mixed text of any length is fine). 4,096 keeps a margin of six on that stack, and no
 * natural text comes near it.
 */
export const maxRunChars = 4_096;

const kindNames = ["letters", "digits", "whitespace characters", "symbols"] as const;
const letter = /[\p{L}\p{M}]/u;
const digit = /\p{N}/u;
const space = /\s/u;

/** 0 letters, 1 digits, 2 whitespace, 3 anything else; ASCII without a regex. */
function kindOf(character: string): number {
  const code = character.charCodeAt(0);
  if (code < 128) {
    if ((code >= 97 && code <= 122) || (code >= 65 && code <= 90)) return 0;
    if (code >= 48 && code <= 57) return 1;
    if (code === 32 || (code >= 9 && code <= 13)) return 2;
    return 3;
  }
  return letter.test(character) ? 0 : digit.test(character) ? 1 : space.test(character) ? 2 : 3;
}

/** The first run longer than maxRunChars (in code points), in one linear pass. */
function overlongRun(text: string): { kind: number; at: number; length: number } | undefined {
  let kind = -1;
  let length = 0;
  let start = 0;
  let offset = 0;
  let found: { kind: number; at: number; length: number } | undefined;
  for (const character of text) {
    const next = kindOf(character);
    if (next === kind) {
      length += 1;
    } else {
      if (found) return found;
      kind = next;
      length = 1;
      start = offset;
    }
    if (length > maxRunChars) found = { kind, at: start, length };
    offset += character.length;
  }
  return found;
}

/**
 * Refuses, with an invalid_argument that names `field`, text llama.cpp cannot
 * tokenize safely: longer than `maxChars` in all (what no context could hold, checked
 * before the tokenizer spends time on it) or holding an over-long run of one kind of
 * character.
 */
export function checkTokenizable(field: string, text: string, maxChars: number): void {
  if (text.length > maxChars) {
    throw new EngineError(
      "invalid_argument",
      `${field} has ${text.length} characters; this model's context cannot hold more than ${maxChars} (its context in tokens times its longest token)`,
    );
  }
  const run = overlongRun(text);
  if (run) {
    throw new EngineError(
      "invalid_argument",
      `${field} holds ${run.length} ${kindNames[run.kind]} in a row at character ${run.at}; the llama.cpp engine accepts runs of at most ${maxRunChars}`,
    );
  }
}
