import type { LlamaContextSequence } from "node-llama-cpp";
import { insertAfterLast } from "../../../common/ordered-insert.js";

/** A sequence of the shared context, lent to one generation at a time. */
export interface PooledSequence {
  readonly sequence: LlamaContextSequence;
  busy: boolean;
  lastUsedAtMs: number;
  /** Length of the prompt it last ran: the part of its cache worth keeping for others. */
  promptTokens: number;
  /** The session of the generation it last ran ("" for none): whose KV it keeps. */
  sessionId: string;
}

/**
 * Lends the context's sequences to generations. Sequences of one context decode
 * together, so every lent sequence joins the running batch at once. An idle sequence
 * keeps the KV of what it last ran: a new generation takes the idle sequence that its
 * caller scores best (the engine scores reuse of a shared prefix against the cache it
 * would destroy); when none scores above 0 it takes an empty sequence, else the least
 * recently used one, whose cache is the one given up. When all are busy, generations
 * wait by urgency (their priority class), first come first served within one.
 */
export class SequencePool {
  private readonly waiters: { urgency: number; resolve: (pooled: PooledSequence) => void }[] = [];

  constructor(readonly sequences: readonly PooledSequence[]) {}

  get busyCount(): number {
    return this.sequences.filter((pooled) => pooled.busy).length;
  }

  get waitingCount(): number {
    return this.waiters.length;
  }

  /**
   * Lends the idle sequence with the highest `score` above 0 (the least recently used
   * among equals), else an empty one, else the least recently used; waits for one if
   * all are busy, behind the waiters as urgent or more (0 is the most urgent); rejects if
   * `signal` aborts.
   */
  acquire(score: (pooled: PooledSequence) => number, signal: AbortSignal, urgency = 0): Promise<PooledSequence> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const idle = this.idle();
    let best: PooledSequence | undefined;
    let bestScore = 0;
    for (const pooled of idle) {
      const value = score(pooled);
      if (value > bestScore) {
        best = pooled;
        bestScore = value;
      }
    }
    best ??= idle.find((pooled) => pooled.sequence.contextTokens.length === 0) ?? idle[0];
    if (best) {
      best.busy = true;
      return Promise.resolve(best);
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        urgency,
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
      signal.addEventListener("abort", onAbort, { once: true });
      insertAfterLast(this.waiters, waiter, (queued) => queued.urgency > urgency);
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
}
