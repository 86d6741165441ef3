/**
 * Admission's keys in the shared Redis. One hash tag, `{infermesh:admission}`, puts them
 * all in one slot, so a Redis Cluster runs each Lua script on one node; admission's
 * traffic to Redis is one script per admitted request of a limited tenant plus a few
 * lease reports a second per replica, well within one node.
 */
const prefix = "{infermesh:admission}";

export const keys = {
  /** Sorted set: admission replica → when its lease report expires. */
  leaseReplicas: `${prefix}:lease:replicas`,
  /** Hash: admission replica → its last lease report. */
  leaseState: `${prefix}:lease:state`,
  /** Pub/sub: a replica short of its share asks the others to report now. */
  rebalanceChannel: `${prefix}:lease:rebalance`,
  /** Hash: admission replica → the tenant's requests it holds slots for. */
  tenantConcurrency: (tenant: string) => `${prefix}:tenant:${tenant}:concurrency`,
  /** The tenant's requests-per-minute allowance (hash: available, updated at). */
  tenantRequests: (tenant: string) => `${prefix}:tenant:${tenant}:requests`,
  /** The tenant's tokens-per-minute allowance. */
  tenantTokens: (tenant: string) => `${prefix}:tenant:${tenant}:tokens`,
} as const;
