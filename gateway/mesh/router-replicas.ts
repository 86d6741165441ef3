import { ClientError, type Client, Status } from "nice-grpc";
import type {
  DrainWorkerRequest,
  DrainWorkerResponse,
  ListTrafficSplitsRequest,
  ListTrafficSplitsResponse,
  ListWorkersRequest,
  ListWorkersResponse,
  PickRequest,
  PickResponse,
  RouterServiceDefinition,
  SetTrafficSplitRequest,
  SetTrafficSplitResponse,
} from "../../gen/infermesh/router/v1/router_service.js";
import type { TraceOptions } from "../../services/common/telemetry/tracing.js";

type RouterClient = Client<typeof RouterServiceDefinition, TraceOptions>;
type Options = { signal?: AbortSignal } & TraceOptions;

/**
 * The router's replicas, active-active: each sees the whole fleet (every worker keeps a
 * Connect stream to each), so any of them can place any request. What a replica learns
 * from its own picks is its own, though: which worker a session's last turn went to and
 * which prefixes a pick just sent where (until the worker's KV events arrive). So a
 * session's picks, or a prompt's (by its first prefix block), go to one replica, and
 * other picks to the replicas in turn. A replica that cannot answer passes the pick to
 * the next one within the same request, so a replica's death costs a request one more
 * round trip, not an error. What an admin changes goes to every replica.
 */
export class RouterReplicas {
  private turn = 0;

  constructor(private readonly replicas: readonly RouterClient[]) {
    if (replicas.length === 0) throw new Error("at least one router replica");
  }

  /**
   * The candidates for a request, from the next replica that answers. A replica that
   * does not know the model (NOT_FOUND) passes it on too: one just restarted has no
   * fleet until the workers register again.
   */
  pick(request: PickRequest, options: Options): Promise<PickResponse> {
    const home = homeOf(request, this.replicas.length);
    return this.firstAnswer((replica) => replica.pick(request, options), options.signal, Status.NOT_FOUND, home);
  }

  /**
   * The fleet: every replica's list, merged, each worker as the replica with its
   * freshest report sees it; so a replica just restarted, whose fleet is still
   * filling, hides no worker.
   */
  async listWorkers(request: ListWorkersRequest, options: Options = {}): Promise<ListWorkersResponse> {
    const lists = await this.everyAnswer((replica) => replica.listWorkers(request, options));
    const byId = new Map<string, ListWorkersResponse["workers"][number]>();
    for (const { workers } of lists) {
      for (const worker of workers) {
        const id = worker.registration?.workerId ?? "";
        const known = byId.get(id);
        if (known === undefined || worker.reportAgeMs < known.reportAgeMs) byId.set(id, worker);
      }
    }
    return { workers: [...byId.values()] };
  }

  listTrafficSplits(request: ListTrafficSplitsRequest, options: Options = {}): Promise<ListTrafficSplitsResponse> {
    return this.firstAnswer((replica) => replica.listTrafficSplits(request, options), options.signal);
  }

  /**
   * Drains a worker on every replica that answers (at least one). The worker itself
   * then reports its draining state to every replica, a restarted one included.
   */
  drainWorker(request: DrainWorkerRequest, options: Options = {}): Promise<DrainWorkerResponse> {
    return this.everyReplica((replica) => replica.drainWorker(request, options));
  }

  /** Sets a traffic split on every replica that answers (at least one). */
  setTrafficSplit(request: SetTrafficSplitRequest, options: Options = {}): Promise<SetTrafficSplitResponse> {
    return this.everyReplica((replica) => replica.setTrafficSplit(request, options));
  }

  /**
   * Tries the replicas in turn, starting from the next one, until one answers or fails
   * for a reason another would share (`alsoPassOn` names a status another replica may
   * answer differently).
   */
  private async firstAnswer<T>(
    call: (replica: RouterClient) => Promise<T>,
    signal: AbortSignal | undefined,
    alsoPassOn?: Status,
    /** The replica to ask first; the next in turn without it. */
    home?: number,
  ): Promise<T> {
    const start = home ?? this.turn++ % this.replicas.length;
    let lastError: unknown;
    for (let step = 0; step < this.replicas.length; step += 1) {
      try {
        return await call(this.replicas[(start + step) % this.replicas.length]!);
      } catch (error) {
        const passOn = replicaDown(error) || (error instanceof ClientError && error.code === alsoPassOn);
        if (signal?.aborted || !passOn) throw error;
        lastError = error;
      }
    }
    throw lastError;
  }

  /** Calls every replica at once; the first success is the answer, and fails only if every replica failed. */
  private async everyReplica<T>(call: (replica: RouterClient) => Promise<T>): Promise<T> {
    return (await this.everyAnswer(call))[0]!;
  }

  /** Calls every replica at once: the answers of those that answered, or the failure if none did. */
  private async everyAnswer<T>(call: (replica: RouterClient) => Promise<T>): Promise<T[]> {
    const outcomes = await Promise.allSettled(this.replicas.map(call));
    const answers = outcomes.flatMap((outcome) => (outcome.status === "fulfilled" ? [outcome.value] : []));
    if (answers.length > 0) return answers;
    // A refusal (NOT_FOUND, INVALID_ARGUMENT) is the same from every replica: report it rather than the first outage.
    const refused = outcomes.find((outcome) => outcome.status === "rejected" && !replicaDown(outcome.reason));
    throw ((refused ?? outcomes[0]) as PromiseRejectedResult).reason;
  }
}

/**
 * The replica whose affinity state a pick should meet: the session's, else the
 * prompt's first prefix block's (a tenant's shared system prompt); none for a request
 * with neither.
 */
function homeOf(request: PickRequest, replicas: number): number | undefined {
  if (replicas === 1) return 0;
  if (request.sessionId !== "") return hashText(request.sessionId) % replicas;
  const first = request.prefixBlockHashes[0];
  return first === undefined ? undefined : Math.abs(Math.trunc(first)) % replicas;
}

/** FNV-1a of a string, unsigned 32 bits. */
function hashText(text: string): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < text.length; index += 1) hash = Math.imul(hash ^ text.charCodeAt(index), 0x01000193);
  return hash >>> 0;
}

/**
 * Whether a call failed because of the replica (unreachable, gone, too slow), so that
 * another replica may answer it. UNAVAILABLE is also "no worker serves the model now",
 * which another replica may see otherwise; asking it costs one round trip.
 */
function replicaDown(error: unknown): boolean {
  return error instanceof ClientError && (error.code === Status.UNAVAILABLE || error.code === Status.DEADLINE_EXCEEDED);
}
