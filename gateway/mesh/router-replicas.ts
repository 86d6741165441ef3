import { ClientError, type Client, Status } from "nice-grpc";
import type {
  DeleteRolloutRequest,
  DeleteRolloutResponse,
  DrainWorkerRequest,
  DrainWorkerResponse,
  ListRolloutsRequest,
  ListRolloutsResponse,
  ListTrafficSplitsRequest,
  ListTrafficSplitsResponse,
  ListWorkersRequest,
  ListWorkersResponse,
  PickRequest,
  PickResponse,
  RouterServiceDefinition,
  SetRolloutRequest,
  SetRolloutResponse,
  SetTrafficSplitRequest,
  SetTrafficSplitResponse,
} from "../../gen/infermesh/router/v1/router_service.js";
import type { ReplicaSet } from "../../services/common/replica-set.js";
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
  constructor(private readonly replicas: ReplicaSet<RouterClient>) {}

  /**
   * The candidates for a request, from the next replica that answers. A replica that
   * does not know the model (NOT_FOUND) passes it on too: one just restarted has no
   * fleet until the workers register again.
   */
  pick(request: PickRequest, options: Options): Promise<PickResponse> {
    return this.replicas.firstAnswer((replica) => replica.pick(request, options), {
      signal: options.signal,
      passOn: (error) => error instanceof ClientError && error.code === Status.NOT_FOUND,
      home: homeOf(request, this.replicas.size),
    });
  }

  /**
   * The fleet: every replica's list, merged, each worker as the replica with its
   * freshest report sees it; so a replica just restarted, whose fleet is still
   * filling, hides no worker.
   */
  async listWorkers(request: ListWorkersRequest, options: Options = {}): Promise<ListWorkersResponse> {
    const lists = await this.replicas.everyAnswer((replica) => replica.listWorkers(request, options));
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
    return this.replicas.firstAnswer((replica) => replica.listTrafficSplits(request, options), options);
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
   * Starts a rollout on every replica that answers (at least one): with Redis they
   * share it and one drives it; without, each drives its own copy.
   */
  setRollout(request: SetRolloutRequest, options: Options = {}): Promise<SetRolloutResponse> {
    return this.everyReplica((replica) => replica.setRollout(request, options));
  }

  listRollouts(request: ListRolloutsRequest, options: Options = {}): Promise<ListRolloutsResponse> {
    return this.replicas.firstAnswer((replica) => replica.listRollouts(request, options), options);
  }

  /** Stops a rollout on every replica that answers (at least one). */
  deleteRollout(request: DeleteRolloutRequest, options: Options = {}): Promise<DeleteRolloutResponse> {
    return this.everyReplica((replica) => replica.deleteRollout(request, options));
  }

  /** Calls every replica at once; the first success is the answer, and fails only if every replica failed. */
  private async everyReplica<T>(call: (replica: RouterClient) => Promise<T>): Promise<T> {
    return (await this.replicas.everyAnswer(call))[0]!;
  }
}

/**
 * The replica whose affinity state a pick should meet: the session's, else the
 * prompt's first prefix block's (a tenant's shared system prompt); none for a request
 * with neither.
 */
function homeOf(request: PickRequest, replicas: number): number | undefined {
  if (replicas <= 1) return replicas === 1 ? 0 : undefined;
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
