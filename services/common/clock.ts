/** Time for policy code, injected so tests can move it by hand. */
export interface Clock {
  now(): number;
  setTimer(callback: () => void, delayMs: number): { cancel(): void };
}

/** The real clock. */
export const systemClock: Clock = Object.freeze({
  now: () => performance.now(),
  setTimer(callback: () => void, delayMs: number) {
    const handle = setTimeout(callback, delayMs);
    return { cancel: () => clearTimeout(handle) };
  },
});

/** A clock that only moves when told; for tests. */
export class ManualClock implements Clock {
  private timeMs = 0;
  private timers: { dueMs: number; callback: () => void; cancelled: boolean }[] = [];

  now(): number {
    return this.timeMs;
  }

  setTimer(callback: () => void, delayMs: number) {
    const timer = { dueMs: this.timeMs + delayMs, callback, cancelled: false };
    this.timers.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** Moves time forward, firing due timers in order. */
  advance(ms: number): void {
    const target = this.timeMs + ms;
    for (;;) {
      const due = this.timers.filter((timer) => !timer.cancelled && timer.dueMs <= target).sort((a, b) => a.dueMs - b.dueMs)[0];
      if (!due) break;
      this.timeMs = due.dueMs;
      due.cancelled = true;
      due.callback();
    }
    this.timers = this.timers.filter((timer) => !timer.cancelled);
    this.timeMs = target;
  }
}
