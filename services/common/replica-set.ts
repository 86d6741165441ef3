import { ClientError, Status } from "nice-grpc";
import { sleep } from "./backoff.js";

/** The pauses between rounds when every replica was down: 100 ms, doubling, at most 800 ms. */
const firstPauseMs = 100;
const maxPauseMs = 800;
const neverAborted = new AbortController().signal;

/**
 * Clients of one service's replicas, active-active: calls go to them in turn (or to a
 * chosen home replica first) and pass to the next when one cannot answer, so a
 * replica's death costs a call one more round trip, not an error.
 */
export class ReplicaSet<Client> {
  private turn = 0;
  private current: readonly Client[];

  constructor(members: readonly Client[] = []) {
    this.current = members;
  }

  /** The replicas now. */
  get members(): readonly Client[] {
    return this.current;
  }

  /** The replicas changed (discovery found or lost some); calls under way keep theirs. */
  setMembers(members: readonly Client[]): void {
    this.current = members;
  }

  get size(): number {
    return this.members.length;
  }

  /** The next replica in turn: a long-lived stream that broke reconnects to the one after the replica it lost. */
  next(): Client {
    if (this.members.length === 0) throw noReplica();
    return this.members[this.turn++ % this.members.length]!;
  }

  /**
   * Tries the replicas, from `home` or else the next in turn, until one answers or fails
   * for a reason another would share. A failure moves on when the replica is down
   * (`replicaDown`) or `passOn` says another may answer it differently. When every
   * replica was down, it tries them all again after a short pause, for up to
   * `retryForMs` (and never past `signal`): a replica just restarted is up before its
   * clients' channels have reconnected, and a pause is better than an error.
   */
  async firstAnswer<T>(
    call: (replica: Client) => Promise<T>,
    options: {
      readonly signal?: AbortSignal;
      readonly passOn?: (error: unknown) => boolean;
      readonly home?: number;
      readonly retryForMs?: number;
    } = {},
  ): Promise<T> {
    const turn = this.turn++;
    const giveUpAt = performance.now() + (options.retryForMs ?? 0);
    for (let round = 0; ; round += 1) {
      // The members as they are this round: discovery may have changed them.
      const members = this.members;
      const start = options.home === undefined ? turn : options.home;
      let lastError: unknown = noReplica();
      let allDown = true;
      for (let step = 0; step < members.length; step += 1) {
        try {
          return await call(members[(start + step) % members.length]!);
        } catch (error) {
          const down = replicaDown(error);
          if (options.signal?.aborted || !(down || options.passOn?.(error))) throw error;
          allDown &&= down;
          lastError = error;
        }
      }
      const pauseMs = Math.min(maxPauseMs, firstPauseMs * 2 ** round);
      if (!allDown || performance.now() + pauseMs > giveUpAt) throw lastError;
      await sleep(pauseMs, options.signal ?? neverAborted);
      if (options.signal?.aborted) throw lastError;
    }
  }

  /** Calls every replica at once: the answers of those that answered, or a failure if none did. */
  async everyAnswer<T>(call: (replica: Client) => Promise<T>): Promise<T[]> {
    if (this.members.length === 0) throw noReplica();
    const outcomes = await Promise.allSettled(this.members.map(call));
    const answers = outcomes.flatMap((outcome) => (outcome.status === "fulfilled" ? [outcome.value] : []));
    if (answers.length > 0) return answers;
    // A refusal (NOT_FOUND, INVALID_ARGUMENT) is the same from every replica: report it rather than the first outage.
    const refused = outcomes.find((outcome) => outcome.status === "rejected" && !replicaDown(outcome.reason));
    throw ((refused ?? outcomes[0]) as PromiseRejectedResult).reason;
  }
}

/** No replica is known (discovery has found none yet): as if every one were down. */
const noReplica = () => new ClientError("", Status.UNAVAILABLE, "no replica of the service is known yet");

/**
 * Whether a call failed because of the replica (unreachable, gone, too slow), so that
 * another replica may answer it.
 */
export function replicaDown(error: unknown): boolean {
  return error instanceof ClientError && (error.code === Status.UNAVAILABLE || error.code === Status.DEADLINE_EXCEEDED);
}
