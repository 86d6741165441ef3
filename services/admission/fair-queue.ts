/** What a FairQueue holds: something of one tenant, queued at a time. */
export interface FairQueueEntry {
  readonly tenantId: string;
  readonly enqueuedAtMs: number;
}

/**
 * One priority class's waiters: a first-in first-out queue per tenant, and the tenants
 * served round-robin, one request per turn, so a tenant with a thousand waiters delays
 * a tenant with one by a single turn, not a thousand.
 *
 * Round-robin by request rather than by tokens: what is scarce here is the slot, held
 * for one request's life, and its cost in tokens is unknown when it is granted (the
 * output bound is an upper limit that callers set generously, often ten times the real
 * answer). Weighting turns by that guess would punish callers for a large max_tokens
 * rather than for what they use; token use over time is the tokens-per-minute limit's
 * job, which charges real output as it streams.
 */
export class FairQueue<Entry extends FairQueueEntry> {
  /** Tenants with waiters in round-robin order: the first one is served next. */
  private readonly tenants = new Map<string, Entry[]>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds an entry behind its tenant's others; a tenant new to the queue takes the last turn. */
  push(entry: Entry): void {
    const line = this.tenants.get(entry.tenantId);
    if (line) line.push(entry);
    else this.tenants.set(entry.tenantId, [entry]);
    this.count += 1;
  }

  /** The entry served next. */
  peek(): Entry | undefined {
    const first = this.tenants.values().next();
    return first.done ? undefined : first.value[0];
  }

  /** Removes and returns the entry served next; its tenant moves to the last turn. */
  take(): Entry | undefined {
    const first = this.tenants.entries().next();
    if (first.done) return undefined;
    const [tenantId, line] = first.value;
    const entry = line.shift()!;
    this.tenants.delete(tenantId);
    if (line.length > 0) this.tenants.set(tenantId, line);
    this.count -= 1;
    return entry;
  }

  /** Removes an entry wherever it stands; the other tenants keep their turns. */
  remove(entry: Entry): boolean {
    const line = this.tenants.get(entry.tenantId);
    const index = line?.indexOf(entry) ?? -1;
    if (index < 0) return false;
    line!.splice(index, 1);
    if (line!.length === 0) this.tenants.delete(entry.tenantId);
    this.count -= 1;
    return true;
  }

  /**
   * Entries of this queue served before `entry` if nothing else arrives: the k
   * before it in its tenant's line, and from every other tenant k turns (k + 1 for
   * tenants whose turn comes before its tenant's), or all it has if fewer.
   */
  positionOf(entry: Entry): number {
    const index = this.tenants.get(entry.tenantId)?.indexOf(entry) ?? -1;
    return index < 0 ? 0 : this.aheadOf(entry.tenantId, index);
  }

  /** Entries served before a new entry of `tenantId` pushed now. */
  positionOfNext(tenantId: string): number {
    return this.aheadOf(tenantId, this.tenants.get(tenantId)?.length ?? 0);
  }

  /** The entry served last: the newest of the tenant with the longest line (the latest turn among equals). */
  lastServed(): Entry | undefined {
    let last: Entry[] | undefined;
    for (const line of this.tenants.values()) if (!last || line.length >= last.length) last = line;
    return last?.at(-1);
  }

  /** When the longest-waiting entry was queued. */
  oldestEnqueuedAtMs(): number | undefined {
    let oldest: number | undefined;
    for (const line of this.tenants.values()) oldest = Math.min(oldest ?? Infinity, line[0]!.enqueuedAtMs);
    return oldest;
  }

  *[Symbol.iterator](): IterableIterator<Entry> {
    for (const line of this.tenants.values()) yield* line;
  }

  private aheadOf(tenantId: string, indexInLine: number): number {
    let ahead = indexInLine;
    let turnBefore = true;
    for (const [other, line] of this.tenants) {
      if (other === tenantId) {
        turnBefore = false;
        continue;
      }
      ahead += Math.min(line.length, indexInLine + (turnBefore ? 1 : 0));
    }
    return ahead;
  }
}
