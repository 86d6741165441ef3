import type { LlamaContextSequence } from "node-llama-cpp";

/** A sequence of the shared context, lent to one generation at a time. */
export interface PooledSequence {
  readonly sequence: LlamaContextSequence;
  busy: boolean;
  lastUsedAtMs: number;
}

/**
 * Lends the context's sequences to generations, first come first served. Sequences of
 * one context decode together, so every lent sequence joins the running batch at once.
 */
export class SequencePool {
  private readonly waiters: { resolve: (pooled: PooledSequence) => void }[] = [];

  constructor(readonly sequences: readonly PooledSequence[]) {}

  get busyCount(): number {
    return this.sequences.filter((pooled) => pooled.busy).length;
  }

  get waitingCount(): number {
    return this.waiters.length;
  }

  /** Lends an idle sequence, waiting for one if all are busy; rejects if `signal` aborts. */
  acquire(signal: AbortSignal): Promise<PooledSequence> {
    const idle = this.leastRecentlyUsedIdle();
    if (idle) {
      idle.busy = true;
      return Promise.resolve(idle);
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (pooled: PooledSequence) => {
          signal.removeEventListener("abort", onAbort);
          resolve(pooled);
        },
      };
      const onAbort = () => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        reject(signal.reason);
      };
      if (signal.aborted) return reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  release(pooled: PooledSequence): void {
    pooled.lastUsedAtMs = performance.now();
    const next = this.waiters.shift();
    if (next) next.resolve(pooled);
    else pooled.busy = false;
  }

  /** Idle sequences, least recently used first. */
  idle(): PooledSequence[] {
    return this.sequences.filter((pooled) => !pooled.busy).sort((a, b) => a.lastUsedAtMs - b.lastUsedAtMs);
  }

  private leastRecentlyUsedIdle(): PooledSequence | undefined {
    return this.idle()[0];
  }
}
