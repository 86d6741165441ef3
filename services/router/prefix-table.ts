/**
 * Which prompt prefixes each worker's KV cache is likely to hold, as chained block
 * hashes (services/common/prefix-hash.ts), LRU-bounded per worker.
 *
 * Two sources feed it. A worker that sends KV events is tracked exactly: blocks it
 * stored and evicted. Every pick also records the request's blocks on the chosen
 * worker at once, because the worker's own events arrive only after its prefill; for a
 * worker without events that is all there is (the approximate mode of the Gateway API
 * Inference Extension's prefix scorer).
 *
 * Blocks are chained, so holding block i means holding the prefix up to i. Recording
 * touches a prompt's blocks deepest first, so the LRU evicts a prefix from its tail
 * and the blocks a worker holds of one prompt stay a prefix of it; matching can then
 * binary-search the depth instead of probing every block.
 *
 * The tables key blocks by 30 bits of their hash (small integers, which V8 stores
 * without allocating): a million-worker-block table then costs tens of megabytes and
 * little garbage collection. The price is a false match once in about 10^9 / (blocks
 * held) lookups, which at worst nudges one score.
 *
 * Each worker's blocks are an exact LRU: a doubly linked list in typed arrays (slot
 * indices, no objects), with a Map from block to slot. A touch relinks two slots, an
 * add past the worker's share evicts the list's tail: O(1) each, so no pick pays for a
 * batch trim of the whole table. (Batch trims did: recording 10 new blocks a pick into
 * an 8,192-block table cost 3 µs at the median and 290 µs at the p99, where a trim
 * walked and selected the whole table; as a list, 17 µs at the p99.)
 */
export class PrefixTable {
  /** Each worker's blocks, in the order of their last touch. */
  private readonly byWorker = new Map<string, WorkerBlocks>();
  /** Who holds each block: one worker's index inline, or the set of them; sharded, as a Map holds at most 2^24 keys. */
  private readonly holderShards = Array.from({ length: 8 }, () => new Map<number, number | Set<number>>());
  private readonly indexOf = new Map<string, number>();
  private readonly idOf: string[] = [];

  constructor(
    /** Blocks remembered per worker; the least recently used go first. */
    private readonly blocksPerWorker: number,
    /** Blocks of a prompt matched at most (the Inference Extension matches 256). */
    readonly maxMatchBlocks = 256,
  ) {}

  /** Marks `hashes` (one prompt's blocks, first first) as held by `workerId`, most recent. */
  record(workerId: string, hashes: readonly number[]): void {
    if (hashes.length === 0) return;
    const worker = this.workerIndex(workerId);
    const blocks = this.blocksOf(workerId);
    for (let index = Math.min(hashes.length, this.maxMatchBlocks) - 1; index >= 0; index -= 1) {
      const hash = blockKey(hashes[index]!);
      const slot = blocks.slotOf.get(hash);
      if (slot === undefined) this.add(blocks, worker, hash);
      else blocks.touch(slot);
    }
  }

  /** Applies a worker's KV events. `cleared` drops everything first (sent after a reconnect). */
  apply(
    workerId: string,
    events: { readonly stored: readonly number[]; readonly evicted: readonly number[]; readonly cleared: boolean },
  ): void {
    if (events.cleared) this.forget(workerId);
    const worker = this.workerIndex(workerId);
    const blocks = this.blocksOf(workerId);
    for (const evicted of events.evicted) {
      const hash = blockKey(evicted);
      if (blocks.remove(hash)) this.unhold(worker, hash);
    }
    // Stored blocks come in prompt order; add them deepest first, as record() does.
    for (let index = events.stored.length - 1; index >= 0; index -= 1) {
      const hash = blockKey(events.stored[index]!);
      if (!blocks.slotOf.has(hash)) this.add(blocks, worker, hash);
    }
  }

  /**
   * How many leading blocks of `hashes` each worker holding its first block holds;
   * workers not listed hold none. Only holders are looked at, so the cost follows how
   * widely the prompt's prefix is held, not the fleet's size. Assumes what a worker holds
   * of a prompt is a prefix of it (see the class comment); a gap makes it approximate.
   */
  match(hashes: readonly number[]): Map<string, number> {
    const matched = new Map<string, number>();
    const length = Math.min(hashes.length, this.maxMatchBlocks);
    if (length === 0) return matched;
    const first = this.holdersOf(blockKey(hashes[0]!));
    if (first === undefined) return matched;
    const depthOf = (worker: number) => {
      // Invariant: blocks [0, low) held; block `high` and beyond not held.
      let low = 1;
      let high = length;
      while (low < high) {
        const middle = (low + high) >>> 1;
        if (this.holds(blockKey(hashes[middle]!), worker)) low = middle + 1;
        else high = middle;
      }
      return low;
    };
    if (typeof first === "number") matched.set(this.idOf[first]!, depthOf(first));
    else for (const worker of first) matched.set(this.idOf[worker]!, depthOf(worker));
    return matched;
  }

  /** Forgets a worker's blocks (it left, or its models changed). */
  forget(workerId: string): void {
    const blocks = this.byWorker.get(workerId);
    if (blocks === undefined) return;
    const worker = this.indexOf.get(workerId)!;
    for (const hash of blocks.slotOf.keys()) this.unhold(worker, hash);
    this.byWorker.delete(workerId);
  }

  /** Blocks remembered for a worker (at most `blocksPerWorker`). */
  size(workerId: string): number {
    return this.byWorker.get(workerId)?.slotOf.size ?? 0;
  }

  private workerIndex(workerId: string): number {
    let index = this.indexOf.get(workerId);
    if (index === undefined) {
      index = this.idOf.length;
      this.idOf.push(workerId);
      this.indexOf.set(workerId, index);
    }
    return index;
  }

  private blocksOf(workerId: string): WorkerBlocks {
    let blocks = this.byWorker.get(workerId);
    if (blocks === undefined) {
      blocks = new WorkerBlocks(this.blocksPerWorker);
      this.byWorker.set(workerId, blocks);
    }
    return blocks;
  }

  private shard(key: number): Map<number, number | Set<number>> {
    return this.holderShards[key & 7]!;
  }

  private holdersOf(key: number): number | Set<number> | undefined {
    return this.shard(key).get(key);
  }

  private holds(hash: number, worker: number): boolean {
    const held = this.holdersOf(hash);
    return held === worker || (typeof held === "object" && held.has(worker));
  }

  /** `hash` becomes the worker's most recent block; past its share the least recent goes. */
  private add(blocks: WorkerBlocks, worker: number, hash: number): void {
    const evicted = blocks.add(hash);
    if (evicted !== undefined) this.unhold(worker, evicted);
    const shard = this.shard(hash);
    const held = shard.get(hash);
    if (held === undefined) shard.set(hash, worker);
    else if (typeof held === "number") {
      if (held !== worker) shard.set(hash, new Set([held, worker]));
    } else held.add(worker);
  }

  private unhold(worker: number, hash: number): void {
    const shard = this.shard(hash);
    const held = shard.get(hash);
    if (held === worker) shard.delete(hash);
    else if (typeof held === "object") {
      held.delete(worker);
      if (held.size === 1) shard.set(hash, held.values().next().value!);
    }
  }
}

/** No slot: the end of a list. */
const none = -1;

/**
 * One worker's blocks as an LRU list, most recent at `head`. Slots live in typed arrays
 * that grow by doubling up to `capacity`, so a worker that holds little costs little.
 */
class WorkerBlocks {
  /** The slot of each block held. */
  readonly slotOf = new Map<number, number>();
  private keys = new Int32Array(0);
  private newer = new Int32Array(0);
  private older = new Int32Array(0);
  private head = none;
  private tail = none;
  /** Slots handed out so far; freed ones (from evicted events) are reused first. */
  private used = 0;
  private readonly free: number[] = [];

  constructor(private readonly capacity: number) {}

  /** Makes the block in `slot` the most recent. */
  touch(slot: number): void {
    if (slot === this.head) return;
    this.unlink(slot);
    this.linkFirst(slot);
  }

  /** Holds `hash` as the most recent block; returns the block evicted for it, if one was. */
  add(hash: number): number | undefined {
    let evicted: number | undefined;
    let slot: number;
    if (this.slotOf.size >= this.capacity) {
      slot = this.tail;
      evicted = this.keys[slot]!;
      this.slotOf.delete(evicted);
      this.unlink(slot);
    } else if (this.free.length > 0) {
      slot = this.free.pop()!;
    } else {
      if (this.used === this.keys.length) this.grow();
      slot = this.used++;
    }
    this.keys[slot] = hash;
    this.slotOf.set(hash, slot);
    this.linkFirst(slot);
    return evicted;
  }

  /** Drops `hash`; false when it was not held. */
  remove(hash: number): boolean {
    const slot = this.slotOf.get(hash);
    if (slot === undefined) return false;
    this.slotOf.delete(hash);
    this.unlink(slot);
    this.free.push(slot);
    return true;
  }

  private linkFirst(slot: number): void {
    this.older[slot] = this.head;
    this.newer[slot] = none;
    if (this.head !== none) this.newer[this.head] = slot;
    this.head = slot;
    if (this.tail === none) this.tail = slot;
  }

  private unlink(slot: number): void {
    const newer = this.newer[slot]!;
    const older = this.older[slot]!;
    if (newer === none) this.head = older;
    else this.older[newer] = older;
    if (older === none) this.tail = newer;
    else this.newer[older] = newer;
  }

  private grow(): void {
    const size = Math.min(this.capacity, Math.max(64, this.keys.length * 2));
    const widen = (from: Int32Array) => {
      const to = new Int32Array(size);
      to.set(from);
      return to;
    };
    this.keys = widen(this.keys);
    this.newer = widen(this.newer);
    this.older = widen(this.older);
  }
}

/** 30 bits of a block hash (both halves folded in): a small integer key. */
function blockKey(hash: number): number {
  return ((hash >>> 0) ^ Math.floor(hash / 0x1_0000_0000)) & 0x3fff_ffff;
}
