import { systemClock, type Clock } from "../common/clock.js";

/**
 * The field of a worker's log line that carries how far its model has loaded, a
 * fraction in [0, 1]; the launcher draws these lines as one progress bar.
 */
export const loadProgressField = "load_progress";

/**
 * Turns node-llama-cpp's load progress callbacks (hundreds for a large model) into a
 * few log lines: one each time the load passes another tenth, one after `quietMs`
 * without a line if it has moved at all (a slow disk), and always the end.
 */
export class LoadProgressLog {
  private loggedFraction = 0;
  private loggedAtMs: number;

  constructor(
    private readonly log: (fraction: number) => void,
    private readonly clock: Clock = systemClock,
    private readonly quietMs = 2_000,
  ) {
    this.loggedAtMs = clock.now();
  }

  /** The load has reached `fraction` (0 to 1). */
  update(fraction: number): void {
    const reached = Math.min(1, Math.max(0, fraction));
    if (reached <= this.loggedFraction) return;
    const passedTenth = Math.floor(reached * 10) > Math.floor(this.loggedFraction * 10);
    if (!passedTenth && this.clock.now() - this.loggedAtMs < this.quietMs) return;
    this.loggedFraction = reached;
    this.loggedAtMs = this.clock.now();
    this.log(Math.round(reached * 1000) / 1000);
  }
}
