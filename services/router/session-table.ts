/**
 * The worker each session was last sent to, so its next turn lands where its KV
 * already is. LRU-bounded: the sessions not seen for longest are forgotten first.
 */
export class SessionTable {
  private readonly workers = new Map<string, string>();

  constructor(private readonly capacity: number) {}

  /** The worker `sessionId` last went to, if remembered. */
  workerOf(sessionId: string): string | undefined {
    return sessionId === "" ? undefined : this.workers.get(sessionId);
  }

  /** Remembers that `sessionId` went to `workerId` (most recent). */
  record(sessionId: string, workerId: string): void {
    if (sessionId === "") return;
    this.workers.delete(sessionId);
    this.workers.set(sessionId, workerId);
    if (this.workers.size > this.capacity) this.workers.delete(this.workers.keys().next().value!);
  }

  get size(): number {
    return this.workers.size;
  }
}
