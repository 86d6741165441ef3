import type { BatchItem, CustomBatchingPrioritizationStrategy, LlamaContext, PrioritizedBatchItem } from "node-llama-cpp";

/**
 * How one llama.cpp context fills each decode batch.
 *
 * node-llama-cpp's default strategy keeps tokens in the order they were queued and
 * decodes as soon as the previous decode returns. With llama.cpp's per-sequence KV
 * streams (node-llama-cpp builds contexts with `kv_unified = false`) that costs most of
 * the batching gain, measured on the gpt-oss test model with 8 sequences:
 * - llama.cpp cuts a batch into one micro-batch per run of consecutive sequence ids
 *   (`llama_batch_allocr::split_equal` with `sequential`), each a full pass over the
 *   weights. Queue order is the order the samplers finished, so 8 sequences took 3 to 5
 *   passes per step.
 * - The sequence whose token was sampled last is not queued yet when the next decode
 *   starts, so it decodes alone right after: 7 + 1 passes per step.
 *
 * This strategy orders the items by sequence id, and while fewer sequences are queued
 * than are generating it holds the batch back (returns nothing) for at most `maxHolds`
 * consecutive calls. node-llama-cpp calls the strategy again after a microtask turn,
 * which is all the straggler needs; the bound keeps a generation that waits on
 * something else (a slow client) from delaying the others by more than that.
 * Tokens are shared out as node-llama-cpp's "maximumParallelism" does: an equal share
 * each, then the rest to the higher evaluation priority.
 */
export function sequenceOrderedStrategy(
  sequenceIds: () => ReadonlyMap<readonly unknown[], number> | undefined,
  generating: () => number,
  maxHolds = 32,
): CustomBatchingPrioritizationStrategy {
  let holds = 0;
  return ({ items, size }) => {
    if (items.length < generating() && holds < maxHolds) {
      holds += 1;
      return [];
    }
    holds = 0;
    const ids = sequenceIds();
    const ordered = ids ? [...items].sort((a, b) => (ids.get(a.tokens) ?? 0) - (ids.get(b.tokens) ?? 0)) : [...items];
    return shareTokens(ordered, size);
  };
}

/** An equal share of `size` per item (in order), then what is left by evaluation priority. */
export function shareTokens(items: readonly BatchItem[], size: number): PrioritizedBatchItem[] {
  if (items.length === 0) return [];
  const share = Math.max(1, Math.floor(size / items.length));
  let left = size;
  const result: PrioritizedBatchItem[] = [];
  for (const item of items) {
    if (left === 0) break;
    const processAmount = Math.min(item.tokens.length, share, left);
    result.push({ item, processAmount });
    left -= processAmount;
  }
  const wanting = result
    .filter((entry) => entry.processAmount < entry.item.tokens.length)
    .sort((a, b) => b.item.evaluationPriority - a.item.evaluationPriority);
  for (const entry of wanting) {
    if (left === 0) break;
    const more = Math.min(entry.item.tokens.length - entry.processAmount, left);
    entry.processAmount += more;
    left -= more;
  }
  return result;
}

/**
 * Maps a batch item to its sequence id. node-llama-cpp 3.x does not put the id on
 * `BatchItem`; its queued decodes carry it and share the `tokens` array with the item.
 * If a later version changes that, this returns undefined and batches keep queue order
 * (slower, still correct); `llamacpp-engine.test.ts` fails first so the upgrade notices.
 */
export function queuedSequenceIds(context: () => LlamaContext | undefined): () => Map<readonly unknown[], number> | undefined {
  return () => {
    const queued = (context() as unknown as { _queuedDecodes?: unknown } | undefined)?._queuedDecodes;
    if (!Array.isArray(queued)) return undefined;
    const ids = new Map<readonly unknown[], number>();
    for (const entry of queued as { tokens?: unknown; sequenceId?: unknown }[]) {
      if (!Array.isArray(entry.tokens) || typeof entry.sequenceId !== "number") return undefined;
      ids.set(entry.tokens, entry.sequenceId);
    }
    return ids;
  };
}
