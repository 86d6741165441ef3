import type { Clock } from "../common/clock.js";

/** A granted slot; release it exactly once when the work ends. */
export interface Slot {
  readonly id: string;
  readonly queuedMs: number;
  release(): void;
}

/** How a request for a slot ended. */
export type SlotOutcome =
  | { kind: "granted"; slot: Slot }
  | { kind: "rejected"; reason: "queue_full" | "queue_timeout" | "shutting_down"; retryAfterMs: number };

/** A request's place in line, known at once. */
export interface SlotTicket {
  /** Zero-based queue position, or undefined when granted at once. */
  readonly queuePosition: number | undefined;
  readonly estimatedWaitMs: number;
  /** Settles with the outcome; rejects with the abort reason if `signal` aborts first. */
  readonly outcome: Promise<SlotOutcome>;
}

interface Waiter {
  readonly enqueuedAtMs: number;
  settle(outcome: SlotOutcome): void;
}

/**
 * Grants up to `capacity` concurrent slots and queues the rest first-in first-out, with
 * a bounded queue and a per-request queue timeout. Priority classes and fairness come
 * in the admission-policy work; this is the concurrency gate under them.
 */
export class ConcurrencyLimiter {
  private inFlight = 0;
  private readonly queue: Waiter[] = [];
  private nextSlotId = 1;
  private meanHoldMs = 1_000;
  private closed = false;

  constructor(
    readonly capacity: number,
    private readonly maxQueue: number,
    private readonly clock: Clock,
  ) {}

  get inFlightCount(): number {
    return this.inFlight;
  }

  get queuedCount(): number {
    return this.queue.length;
  }

  request(queueTimeoutMs: number, signal: AbortSignal): SlotTicket {
    if (this.closed) return this.settled({ kind: "rejected", reason: "shutting_down", retryAfterMs: 1_000 });
    if (this.inFlight < this.capacity && this.queue.length === 0) return this.settled({ kind: "granted", slot: this.grant(this.clock.now()) });
    if (this.queue.length >= this.maxQueue) {
      return this.settled({ kind: "rejected", reason: "queue_full", retryAfterMs: this.estimateWaitMs(this.queue.length) });
    }

    const position = this.queue.length;
    const outcome = new Promise<SlotOutcome>((resolve, reject) => {
      const leave = () => {
        const index = this.queue.indexOf(waiter);
        if (index >= 0) this.queue.splice(index, 1);
        timer.cancel();
        signal.removeEventListener("abort", onAbort);
      };
      const waiter: Waiter = {
        enqueuedAtMs: this.clock.now(),
        settle: (result) => {
          leave();
          resolve(result);
        },
      };
      const onAbort = () => {
        leave();
        reject(signal.reason);
      };
      const timer = this.clock.setTimer(
        () => waiter.settle({ kind: "rejected", reason: "queue_timeout", retryAfterMs: this.estimateWaitMs(this.queue.length) }),
        queueTimeoutMs,
      );
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      this.queue.push(waiter);
    });
    return { queuePosition: position, estimatedWaitMs: this.estimateWaitMs(position + 1), outcome };
  }

  /** Rejects everything queued and every later request. Granted slots stay until released. */
  close(): void {
    this.closed = true;
    for (const waiter of [...this.queue]) waiter.settle({ kind: "rejected", reason: "shutting_down", retryAfterMs: 1_000 });
  }

  private settled(outcome: SlotOutcome): SlotTicket {
    return { queuePosition: undefined, estimatedWaitMs: 0, outcome: Promise.resolve(outcome) };
  }

  private estimateWaitMs(waitersAhead: number): number {
    return Math.round((waitersAhead * this.meanHoldMs) / this.capacity);
  }

  private grant(enqueuedAtMs: number): Slot {
    this.inFlight += 1;
    const grantedAtMs = this.clock.now();
    let released = false;
    return {
      id: `slot-${this.nextSlotId++}`,
      queuedMs: Math.round(grantedAtMs - enqueuedAtMs),
      release: () => {
        if (released) return;
        released = true;
        this.inFlight -= 1;
        this.meanHoldMs = 0.9 * this.meanHoldMs + 0.1 * (this.clock.now() - grantedAtMs);
        this.admitNext();
      },
    };
  }

  private admitNext(): void {
    while (this.inFlight < this.capacity) {
      const next = this.queue[0];
      if (!next) return;
      next.settle({ kind: "granted", slot: this.grant(next.enqueuedAtMs) });
    }
  }
}
