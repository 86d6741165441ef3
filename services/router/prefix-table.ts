import { quickselect } from "../common/quickselect.js";

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
 * Recency is a per-worker counter stored with each block, not the order of a Map: a
 * touch overwrites a value in place instead of deleting and re-inserting the key, which
 * would churn the Map's storage (and the garbage collector) on every pick. The least
 * recently used go in batches, once a worker holds an eighth more than its share.
 */
export class PrefixTable {
  /** Each worker's blocks with the tick of their last touch. */
  private readonly byWorker = new Map<string, WorkerBlocks>();
  private selectScratch = new Int32Array(0);
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
      if (blocks.ticks.has(hash)) blocks.ticks.set(hash, blocks.clock++);
      else this.add(blocks, worker, hash);
    }
    this.trim(blocks, worker);
  }

  /** Applies a worker's KV events. `cleared` drops everything first (sent after a reconnect). */
  apply(workerId: string, events: { readonly stored: readonly number[]; readonly evicted: readonly number[]; readonly cleared: boolean }): void {
    if (events.cleared) this.forget(workerId);
    const worker = this.workerIndex(workerId);
    const blocks = this.blocksOf(workerId);
    for (const evicted of events.evicted) {
      const hash = blockKey(evicted);
      if (blocks.ticks.delete(hash)) this.unhold(worker, hash);
    }
    // Stored blocks come in prompt order; add them deepest first, as record() does.
    for (let index = events.stored.length - 1; index >= 0; index -= 1) {
      const hash = blockKey(events.stored[index]!);
      if (!blocks.ticks.has(hash)) this.add(blocks, worker, hash);
    }
    this.trim(blocks, worker);
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
    for (const hash of blocks.ticks.keys()) this.unhold(worker, hash);
    this.byWorker.delete(workerId);
  }

  /** Blocks remembered for a worker (up to an eighth over `blocksPerWorker` between trims). */
  size(workerId: string): number {
    return this.byWorker.get(workerId)?.ticks.size ?? 0;
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
      blocks = { ticks: new Map(), clock: 0 };
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

  private add(blocks: WorkerBlocks, worker: number, hash: number): void {
    blocks.ticks.set(hash, blocks.clock++);
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

  /**
   * Past an eighth over its share, a worker's least recently used blocks go until it
   * holds its share: the ones whose tick is below the (excess)-th smallest. Ticks are
   * renumbered from 0 before they leave the small-integer range.
   */
  private trim(blocks: WorkerBlocks, worker: number): void {
    const { ticks } = blocks;
    const excess = ticks.size - this.blocksPerWorker;
    if (excess > this.blocksPerWorker >> 3 || (excess > 0 && blocks.clock >= maxTick)) {
      const threshold = this.kthSmallestTick(ticks, excess);
      for (const [hash, tick] of ticks) {
        if (tick >= threshold) continue;
        ticks.delete(hash);
        this.unhold(worker, hash);
      }
    }
    if (blocks.clock >= maxTick) this.renumber(blocks);
  }

  /** The tick that `count` ticks are below (ticks are distinct within a worker). */
  private kthSmallestTick(ticks: Map<number, number>, count: number): number {
    if (this.selectScratch.length < ticks.size) this.selectScratch = new Int32Array(ticks.size * 2);
    const values = this.selectScratch;
    let size = 0;
    for (const tick of ticks.values()) values[size++] = tick;
    return quickselect(values, size, count);
  }

  /** Gives a worker's blocks the ticks 0, 1, … in their order. */
  private renumber(blocks: WorkerBlocks): void {
    const ordered = [...blocks.ticks].sort((a, b) => a[1] - b[1]);
    blocks.clock = 0;
    for (const [hash] of ordered) blocks.ticks.set(hash, blocks.clock++);
  }
}

/** A worker's blocks: the tick of each one's last touch, and the next tick. */
interface WorkerBlocks {
  readonly ticks: Map<number, number>;
  clock: number;
}

/** Ticks stay below this (V8's small integers), renumbered when a worker's clock reaches it. */
const maxTick = 2 ** 30 - 1;

/** 30 bits of a block hash (both halves folded in): a small integer key. */
function blockKey(hash: number): number {
  return ((hash >>> 0) ^ Math.floor(hash / 0x1_0000_0000)) & 0x3fff_ffff;
}
