/**
 * The ids of the requests that reached the engine since the last load report. The
 * report lists them, and the router stops counting its picks of them as in flight: the
 * report's own load includes them from then on. Without this the router could only
 * guess from timing when a pick had arrived, and would count a request twice (as its
 * pick and as running) until the next report.
 *
 * Each router replica reads its own list (`reader`): every replica must learn of
 * every arrival, whichever replica picked the request.
 */
export class Arrivals {
  private readonly readers = new Set<ArrivalsReader>();

  /** Ids kept at most per reader while no report takes them (its router not connected): the newest stay. */
  constructor(private readonly capacity = 4_096) {}

  note(requestId: string): void {
    if (requestId === "") return;
    for (const reader of this.readers) reader.note(requestId);
  }

  /** A list of its own, for one router's reports. */
  reader(): ArrivalsReader {
    const reader = new ArrivalsReader(this.capacity);
    this.readers.add(reader);
    return reader;
  }

  /** The router replica is gone (it left DNS): its list is no longer kept. */
  release(reader: ArrivalsReader): void {
    this.readers.delete(reader);
  }
}

/** One router's arrivals: those noted since its last report. */
export class ArrivalsReader {
  private ids: string[] = [];

  constructor(private readonly capacity: number) {}

  note(requestId: string): void {
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
