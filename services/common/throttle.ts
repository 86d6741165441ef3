import { systemClock, type Clock } from "./clock.js";

/**
 * Rate-limits a report that must stay fresh: the first change after a quiet spell is
 * sent at once, later ones at most once per `intervalMs`, and the last change is
 * always sent. Used for the workers' load and KV reports, which change several times
 * per request and would otherwise cost the mesh a message per change.
 */
export class Throttle {
  private lastSentAtMs = Number.NEGATIVE_INFINITY;
  private pending: { cancel(): void } | undefined;

  constructor(
    private readonly send: () => void,
    private readonly intervalMs: number,
    private readonly clock: Clock = systemClock,
  ) {}

  /** Something changed: send now, or once the interval since the last send is over. */
  trigger(): void {
    if (this.pending) return;
    const waitMs = this.lastSentAtMs + this.intervalMs - this.clock.now();
    if (waitMs <= 0) {
      this.fire();
      return;
    }
    this.pending = this.clock.setTimer(() => {
      this.pending = undefined;
      this.fire();
    }, waitMs);
  }

  /** Sends now; a pending send is folded into this one. */
  flush(): void {
    this.cancel();
    this.fire();
  }

  /** Drops a pending send (the stream it was for is gone). */
  cancel(): void {
    this.pending?.cancel();
    this.pending = undefined;
  }

  private fire(): void {
    this.lastSentAtMs = this.clock.now();
    this.send();
  }
}
