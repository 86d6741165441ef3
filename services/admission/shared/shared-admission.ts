import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { Registry } from "prom-client";
import { systemClock } from "../../common/clock.js";
import type { Logger } from "../../common/logger.js";
import { SharedRedis } from "../../common/redis.js";
import { FleetLease, type LeaseHolder } from "./fleet-lease.js";
import { SharedTenantLimiter } from "./shared-tenant-limits.js";

/** Admission's shared mode, running: the fleet's cap as a lease, and tenant limits in Redis. */
export interface SharedAdmission {
  readonly lease: FleetLease;
  readonly tenants: SharedTenantLimiter;
  /** Gives the lease back and closes the connection. */
  close(): Promise<void>;
}

/** Connects to Redis and starts leasing this replica's part of `capacity` for `scheduler`. */
export function startSharedAdmission(
  settings: { readonly redisUrl: string; readonly capacity: number; readonly leaseRefreshMs: number; readonly leaseTtlMs: number },
  scheduler: LeaseHolder,
  logger: Logger,
  registry: Registry,
): SharedAdmission {
  const redis = new SharedRedis(settings.redisUrl, logger, registry, {
    what: "tenant limits and the fleet's concurrency cap",
    fallback: "this replica enforces its share of each limit locally",
  });
  // New at every start: a restarted replica's old counts expire with its old lease.
  const replicaId = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  const lease = new FleetLease(
    redis,
    scheduler,
    { replicaId, capacity: settings.capacity, refreshMs: settings.leaseRefreshMs, ttlMs: settings.leaseTtlMs },
    logger,
    registry,
  );
  const tenants = new SharedTenantLimiter(redis, replicaId, () => lease.replicas, systemClock);
  lease.start();
  return {
    lease,
    tenants,
    close: async () => {
      tenants.close();
      await lease.close();
      await redis.close();
    },
  };
}
