/**
 * A refilling allowance of `perMinute` units that holds at most one minute's worth.
 * It may go into debt: usage known only after the fact (output tokens, reported as
 * they stream) is taken whether it fits or not, and the refill pays the debt back
 * before anything new fits again.
 */
export class MinuteBucket {
  private available: number;
  private updatedAtMs: number;

  constructor(
    private perMinute: number,
    nowMs: number,
  ) {
    this.available = perMinute;
    this.updatedAtMs = nowMs;
  }

  /**
   * How long until `amount` could be taken, debt included; 0 now. A request bigger
   * than a minute's worth waits for a full bucket. `perMinute` is the limit in force
   * now: limits travel with each request, so a changed key takes effect at once.
   */
  waitMs(amount: number, nowMs: number, perMinute: number): number {
    this.refill(nowMs, perMinute);
    const needed = Math.min(amount, this.perMinute);
    return this.available >= needed ? 0 : Math.ceil(((needed - this.available) * 60_000) / this.perMinute);
  }

  /** Takes `amount`, into debt if need be. */
  take(amount: number, nowMs: number): void {
    this.refill(nowMs, this.perMinute);
    this.available -= amount;
  }

  /** Gives back what a request took and did not use (it was never granted). */
  refund(amount: number): void {
    this.available = Math.min(this.perMinute, this.available + amount);
  }

  private refill(nowMs: number, perMinute: number): void {
    this.perMinute = perMinute;
    this.available = Math.min(perMinute, this.available + ((nowMs - this.updatedAtMs) * perMinute) / 60_000);
    this.updatedAtMs = nowMs;
  }
}
