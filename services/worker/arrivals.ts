/**
 * The ids of the requests that reached the engine since the last load report. The
 * report lists them, and the router stops counting its picks of them as in flight: the
 * report's own load includes them from then on. Without this the router could only
 * guess from timing when a pick had arrived, and would count a request twice (as its
 * pick and as running) until the next report.
 */
export class Arrivals {
  private ids: string[] = [];

  /** Ids kept at most while no report takes them (no router connected): the newest stay. */
  constructor(private readonly capacity = 4_096) {}

  note(requestId: string): void {
    if (requestId === "") return;
    this.ids.push(requestId);
    if (this.ids.length > this.capacity * 2) this.ids.splice(0, this.ids.length - this.capacity);
  }

  /** The ids noted since the last call, oldest first. */
  take(): string[] {
    const ids = this.ids.length > this.capacity ? this.ids.slice(-this.capacity) : this.ids;
    this.ids = [];
    return ids;
  }
}
