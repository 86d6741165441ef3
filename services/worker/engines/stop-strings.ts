/**
 * Cuts a text stream at the first stop string. Text that could be the start of a stop
 * string is held back until it is known not to be, so no stop string ever reaches
 * the output, even one split across tokens.
 */
export class StopStrings {
  private pending = "";
  private stoppedAt = false;

  constructor(private readonly stops: readonly string[]) {}

  get stopped(): boolean {
    return this.stoppedAt;
  }

  /** Adds generated text; returns what can be emitted now. */
  push(text: string): string {
    if (this.stoppedAt) return "";
    this.pending += text;
    let cut = -1;
    for (const stop of this.stops) {
      const at = this.pending.indexOf(stop);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stoppedAt = true;
      const out = this.pending.slice(0, cut);
      this.pending = "";
      return out;
    }
    const hold = this.heldLength();
    const out = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return out;
  }

  /** The held-back text, once generation ended without a stop string. */
  flush(): string {
    const out = this.stoppedAt ? "" : this.pending;
    this.pending = "";
    return out;
  }

  /** Length of the longest suffix of `pending` that is a proper prefix of a stop string. */
  private heldLength(): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let length = Math.min(stop.length - 1, this.pending.length); length > longest; length -= 1) {
        if (this.pending.endsWith(stop.slice(0, length))) {
          longest = length;
          break;
        }
      }
    }
    return longest;
  }
}
