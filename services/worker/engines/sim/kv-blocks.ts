import type { KvBlockEvent } from "../engine.js";

/** A block of 16 prompt tokens whose KV stays cached under its prefix hash. */
export interface CachedBlock {
  readonly hash: number;
  /** The hash of the block before it in its prompt; undefined for a first block. */
  readonly parent: number | undefined;
  /** Sequences using it now; 0 means idle, evictable in LRU order. */
  refs: number;
  /** Cached blocks whose parent it is. */
  children: number;
}

/**
 * The simulated KV cache, in blocks: blocks private to running sequences, and cached
 * prefix blocks shared by hash, which stay after their sequences end until their space
 * is needed (least recently used first). Reports stored and evicted hashes in batches.
 */
export class KvBlocks {
  private readonly cached = new Map<number, CachedBlock>();
  /** Cached blocks nobody uses, least recently used first (a Map keeps insertion order). */
  private readonly idle = new Map<number, CachedBlock>();
  private privateBlocks = 0;
  private idleEnds = 0;
  private readonly stored = new Set<number>();
  private readonly evicted = new Set<number>();

  constructor(readonly totalBlocks: number) {}

  get usedBlocks(): number {
    return this.cached.size + this.privateBlocks;
  }

  get freeBlocks(): number {
    return this.totalBlocks - this.usedBlocks;
  }

  get idleBlocks(): number {
    return this.idle.size;
  }

  /** Idle cached prefixes: idle blocks that no cached block continues. */
  get idlePrefixes(): number {
    return this.idleEnds;
  }

  /** The cached blocks `hashes` starts with, at most `limit` of them. */
  match(hashes: readonly number[], limit: number): CachedBlock[] {
    const blocks: CachedBlock[] = [];
    for (const hash of hashes) {
      if (blocks.length >= limit) break;
      const block = this.cached.get(hash);
      if (!block) break;
      blocks.push(block);
    }
    return blocks;
  }

  /** Whether `count` new blocks fit once idle blocks other than `reusing` are evicted. */
  fits(count: number, reusing: readonly CachedBlock[]): boolean {
    let idleReused = 0;
    for (const block of reusing) if (block.refs === 0) idleReused += 1;
    return this.freeBlocks + this.idle.size - idleReused >= count;
  }

  /** Starts using `blocks`. */
  acquire(blocks: readonly CachedBlock[]): void {
    for (const block of blocks) {
      this.changeEnd(block, () => {
        if (block.refs === 0) this.idle.delete(block.hash);
        block.refs += 1;
      });
    }
  }

  /** Stops using `blocks`; the last ones go idle first, so a prefix outlives its tails. */
  release(blocks: readonly CachedBlock[]): void {
    for (let index = blocks.length - 1; index >= 0; index -= 1) {
      const block = blocks[index]!;
      this.changeEnd(block, () => {
        block.refs -= 1;
        if (block.refs === 0) this.idle.set(block.hash, block);
      });
    }
  }

  /** Takes `count` private blocks, evicting idle ones as needed; false (taking none) when they do not fit. */
  allocate(count: number): boolean {
    if (this.freeBlocks + this.idle.size < count) return false;
    while (this.freeBlocks < count) this.evictOldest();
    this.privateBlocks += count;
    return true;
  }

  /** Gives back `count` private blocks. */
  free(count: number): void {
    this.privateBlocks -= count;
  }

  /**
   * Turns one of the caller's private blocks into the cached block `hash`, which the
   * caller then uses; when that hash is cached already, shares it and frees the block.
   */
  store(hash: number, parent: number | undefined): CachedBlock {
    this.privateBlocks -= 1;
    const existing = this.cached.get(hash);
    if (existing) {
      this.acquire([existing]);
      return existing;
    }
    const block: CachedBlock = { hash, parent: parent !== undefined && this.cached.has(parent) ? parent : undefined, refs: 1, children: 0 };
    this.cached.set(hash, block);
    const parentBlock = block.parent === undefined ? undefined : this.cached.get(block.parent);
    if (parentBlock) {
      this.changeEnd(parentBlock, () => {
        parentBlock.children += 1;
      });
    }
    if (!this.evicted.delete(hash)) this.stored.add(hash);
    return block;
  }

  /** Evicts up to `count` idle blocks, least recently used first; returns how many. */
  evictIdle(count: number): number {
    let evicted = 0;
    while (evicted < count && this.idle.size > 0) {
      this.evictOldest();
      evicted += 1;
    }
    return evicted;
  }

  /**
   * Blocks at the end of the chain `hashes` that no one else needs: idle, and continued
   * by no cached block but the next one of the chain. Evicting `hashes` frees these.
   */
  exclusiveTail(hashes: readonly number[]): number {
    let tail = 0;
    for (let index = hashes.length - 1; index >= 0; index -= 1) {
      const block = this.cached.get(hashes[index]!);
      if (!block || block.refs > 0 || block.children > (tail > 0 ? 1 : 0)) break;
      tail += 1;
    }
    return tail;
  }

  /** Evicts the exclusive tail of the chain `hashes` (a session's own KV); returns the blocks freed. */
  evictChain(hashes: readonly number[]): number {
    let evicted = 0;
    for (let index = hashes.length - 1; index >= 0; index -= 1) {
      const block = this.cached.get(hashes[index]!);
      if (!block || block.refs > 0 || block.children > 0) break;
      this.evict(block);
      evicted += 1;
    }
    return evicted;
  }

  /** Whether the block `hash` is cached. */
  holds(hash: number): boolean {
    return this.cached.has(hash);
  }

  /** Hashes stored and evicted since the last call, or undefined when none. */
  takeEvents(): KvBlockEvent | undefined {
    if (this.stored.size === 0 && this.evicted.size === 0) return undefined;
    const event = { stored: [...this.stored], evicted: [...this.evicted] };
    this.stored.clear();
    this.evicted.clear();
    return event;
  }

  private evictOldest(): void {
    this.evict(this.idle.values().next().value!);
  }

  /** Drops an idle block. */
  private evict(block: CachedBlock): void {
    this.changeEnd(block, () => {
      this.idle.delete(block.hash);
      this.cached.delete(block.hash);
    });
    const parentBlock = block.parent === undefined ? undefined : this.cached.get(block.parent);
    if (parentBlock) {
      this.changeEnd(parentBlock, () => {
        parentBlock.children = Math.max(0, parentBlock.children - 1);
      });
    }
    if (!this.stored.delete(block.hash)) this.evicted.add(block.hash);
  }

  /** Runs `change` on `block`, keeping the count of idle prefix ends right. */
  private changeEnd(block: CachedBlock, change: () => void): void {
    const wasEnd = this.isIdleEnd(block);
    change();
    const isEnd = this.isIdleEnd(block);
    if (wasEnd !== isEnd) this.idleEnds += isEnd ? 1 : -1;
  }

  private isIdleEnd(block: CachedBlock): boolean {
    return block.refs === 0 && block.children === 0 && this.cached.has(block.hash);
  }
}
