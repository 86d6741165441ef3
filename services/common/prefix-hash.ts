/**
 * Prefix identity shared by the worker and the router: a prompt is cut into
 * 64-character blocks of its canonical text and each block gets a hash chained to the
 * one before it, so equal hashes mean equal prefixes. The router computes these from a
 * request without a tokenizer; workers say which ones their KV cache holds.
 */

export const prefixBlockChars = 64;

interface CanonicalMessage {
  readonly role: string;
  readonly content: string;
}

/** The text prefix identity is computed over: a raw prompt as is, a chat turn by turn. */
export function canonicalPrompt(input: { readonly messages: readonly CanonicalMessage[]; readonly prompt?: string | undefined }): string {
  if (input.prompt !== undefined) return input.prompt;
  let text = "";
  // Unit and record separators cannot be confused with message text boundaries.
  for (const message of input.messages) text += `${message.role}\u001f${message.content}\u001e`;
  return text;
}

/**
 * Chained hashes of the full blocks of `text` (a trailing partial block has none), the
 * first `maxBlocks` at most. Each is below 2^53.
 */
export function blockHashes(text: string, blockChars = prefixBlockChars, maxBlocks = Infinity): number[] {
  const hashes: number[] = [];
  let previous = 0;
  for (let start = 0; start + blockChars <= text.length && hashes.length < maxBlocks; start += blockChars) {
    previous = chainedHash(previous, text, start, start + blockChars);
    hashes.push(previous);
  }
  return hashes;
}

/** A 53-bit hash of text[start, end) seeded with the previous block's hash (cyrb53's mixing). */
function chainedHash(previous: number, text: string, start: number, end: number): number {
  let h1 = 0xdeadbeef ^ (previous >>> 0);
  let h2 = 0x41c6ce57 ^ Math.floor(previous / 0x1_0000_0000);
  for (let index = start; index < end; index += 1) {
    const code = text.charCodeAt(index);
    h1 = Math.imul(h1 ^ code, 2654435761);
    h2 = Math.imul(h2 ^ code, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** Blocks newly held and blocks no longer held by anyone. */
export interface BlockChanges {
  readonly stored: number[];
  readonly evicted: number[];
}

/**
 * Which holders (sequences, cache slots) hold which blocks, counted so that a block
 * shared by two holders is evicted only when the last one lets it go.
 */
export class HeldBlocks<Holder> {
  private readonly byHolder = new Map<Holder, readonly number[]>();
  private readonly holders = new Map<number, number>();

  /** Replaces what `holder` holds; returns what changed fleet-visibly. */
  set(holder: Holder, hashes: readonly number[]): BlockChanges {
    const changes: BlockChanges = { stored: [], evicted: [] };
    for (const hash of hashes) {
      const count = this.holders.get(hash) ?? 0;
      this.holders.set(hash, count + 1);
      if (count === 0) changes.stored.push(hash);
    }
    for (const hash of this.byHolder.get(holder) ?? []) {
      const count = this.holders.get(hash)! - 1;
      if (count === 0) {
        this.holders.delete(hash);
        changes.evicted.push(hash);
      } else {
        this.holders.set(hash, count);
      }
    }
    if (hashes.length === 0) this.byHolder.delete(holder);
    else this.byHolder.set(holder, [...hashes]);
    return changes;
  }

  /** Everything held now, each block once. */
  all(): number[] {
    return [...this.holders.keys()];
  }

  get size(): number {
    return this.holders.size;
  }
}
