import type { Outcome } from "./request-metrics.js";

/** One ended request, as a bug report lists it: ids and figures, never its text. */
export interface RequestSummary {
  readonly at: string;
  readonly request_id: string;
  readonly trace_id: string | undefined;
  readonly api: string;
  readonly model: string;
  readonly outcome: Outcome;
  readonly e2e_ms: number;
  readonly error?: string;
}

/** The last requests that ended (a bounded ring), for the debug bundle's slow and failed lists. */
export class RecentRequests {
  private readonly ring: RequestSummary[] = [];
  private next = 0;

  constructor(private readonly capacity = 1_000) {}

  add(summary: RequestSummary): void {
    if (this.ring.length < this.capacity) this.ring.push(summary);
    else this.ring[this.next] = summary;
    this.next = (this.next + 1) % this.capacity;
  }

  /** The `count` slowest of the recent requests, slowest first. */
  slowest(count: number): RequestSummary[] {
    return [...this.ring].sort((a, b) => b.e2e_ms - a.e2e_ms).slice(0, count);
  }

  /** The recent requests that failed in the mesh or at the caller, newest first. */
  failed(count: number): RequestSummary[] {
    return this.inOrder()
      .filter((summary) => summary.outcome !== "ok")
      .reverse()
      .slice(0, count);
  }

  private inOrder(): RequestSummary[] {
    return this.ring.length < this.capacity ? [...this.ring] : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
  }
}
