import { systemClock, type Clock } from "../common/clock.js";

/**
 * The worker's recent generation failures, for the router's health score: the share of
 * the generations that ended in the last `windowMs` that failed for the engine's sake
 * (not a bad request, not a client that left). Old outcomes age out, so a worker that
 * recovered, or that the router stopped sending work to, does not stay marked.
 */
export class FailureWindow {
  private readonly outcomes: { atMs: number; failed: boolean }[] = [];

  constructor(
    private readonly windowMs = 60_000,
    /** Outcomes kept at most: the newest count. */
    private readonly capacity = 256,
    private readonly clock: Clock = systemClock,
  ) {}

  record(failed: boolean): void {
    this.outcomes.push({ atMs: this.clock.now(), failed });
    if (this.outcomes.length > this.capacity) this.outcomes.shift();
  }

  /** Failed over ended, in [0,1]; 0 with nothing in the window. */
  ratio(): number {
    const since = this.clock.now() - this.windowMs;
    while (this.outcomes.length > 0 && this.outcomes[0]!.atMs < since) this.outcomes.shift();
    if (this.outcomes.length === 0) return 0;
    let failed = 0;
    for (const outcome of this.outcomes) if (outcome.failed) failed += 1;
    return failed / this.outcomes.length;
  }
}
