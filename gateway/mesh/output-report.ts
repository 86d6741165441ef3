import { systemClock, type Clock } from "../../services/common/clock.js";
import { Throttle } from "../../services/common/throttle.js";
import type { AdmissionSlot } from "./admission-slot.js";

/** Least time between two output reports of one request. */
const reportIntervalMs = 1_000;

/**
 * Counts a generation's output tokens and reports them to admission on the slot's
 * Acquire stream while they stream: the first delta at once, then at most once per
 * second, and the final count before the slot is released. Admission charges them to
 * the tenant's tokens per minute as they come, so a tenant's long answers hold back
 * its next requests before the answers end, not only after.
 */
export class OutputReport {
  private outputTokens = 0;
  private reported = 0;
  private readonly throttle: Throttle;

  constructor(
    private readonly slot: Pick<AdmissionSlot, "reportOutputTokens">,
    clock: Clock = systemClock,
  ) {
    this.throttle = new Throttle(() => this.send(), reportIntervalMs, clock);
  }

  /** Counts the tokens of one delta. */
  add(tokens: number): void {
    if (tokens <= 0) return;
    this.outputTokens += tokens;
    this.throttle.trigger();
  }

  /**
   * Sends the final count now, if it is news: the worker's own total when it gave one
   * (authoritative), else the deltas' sum. Call it when the generation ends and again
   * (a no-op then) before releasing the slot.
   */
  finish(totalOutputTokens?: number): void {
    if (totalOutputTokens !== undefined) this.outputTokens = totalOutputTokens;
    this.throttle.cancel();
    if (this.outputTokens !== this.reported) this.send();
  }

  private send(): void {
    this.reported = this.outputTokens;
    this.slot.reportOutputTokens(this.outputTokens);
  }
}
