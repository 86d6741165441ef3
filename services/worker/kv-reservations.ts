/**
 * The KV cells this worker's running generations will hold at their output bound:
 * prompt plus max tokens for every choice. The KV reports carry the total to
 * memory-guard, so a generation counts against the device from its start, before its
 * tokens exist. Reservations die with the worker: memory-guard drops a device's
 * accounting when its Report stream ends.
 */
export class KvReservations {
  private total = 0;
  private readonly listeners = new Set<() => void>();

  get reservedTokens(): number {
    return this.total;
  }

  /** Calls `listener` whenever the total changes. */
  onChange(listener: () => void): void {
    this.listeners.add(listener);
  }

  /** Reserves `kvTokens`; the returned function releases them (idempotent). */
  hold(kvTokens: number): () => void {
    this.change(kvTokens);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.change(-kvTokens);
    };
  }

  private change(tokens: number): void {
    this.total += tokens;
    for (const listener of this.listeners) listener();
  }
}
