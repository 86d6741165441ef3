import type { Redis } from "ioredis";
import { Gauge, type Registry } from "prom-client";
import { classNames, type PerClass } from "../../common/priority-classes.js";
import type { Logger } from "../../common/logger.js";
import type { SharedRedis } from "../../common/redis.js";
import { keys } from "./keys.js";

/** What a replica asks for: its slots in use and, per class, what it runs and queues. */
export interface Demand {
  readonly inUse: number;
  readonly perClass: PerClass<number>;
}

/** Where the lease goes: the scheduler's slot count. */
export interface LeaseHolder {
  /** Slots this replica may grant now, and what its wait estimates assume (its fair share when the lease is momentarily smaller). */
  setCapacity(granting: number, estimating: number): void;
  demand(): Demand;
}

/**
 * The fleet's concurrency cap, shared by the admission replicas as leases, the way
 * quota servers (Doorman, Envoy's global limits) share a budget: each replica reports
 * what it runs and queues per class, and the cap is divided by water-filling in
 * priority order (every replica's interactive demand first, then standard, then batch,
 * each class in proportion to the replicas' demand when it does not all fit; what is
 * left goes evenly, so a replica can start a burst at once). A replica never takes
 * what others hold: its lease is at most the cap less the others' larger of lease and
 * slots in use, so the slots in use across replicas stay under the cap even while
 * leases move. The division is computed in one Lua script, atomically, from the
 * replicas' last reports, with integer shares by largest remainder so every replica
 * computes the same split.
 *
 * A replica that dies stops renewing; its report expires after `ttlMs` and its slots
 * go back to the others. When a replica wants more than it got, it publishes a
 * rebalance and the others report at once rather than at their next period. While
 * Redis cannot be reached, a replica grants its share of the cap by the replica count
 * it last saw (never the whole cap: that would multiply it); one that starts without
 * Redis grants nothing for up to 2 s, then the whole cap, as it has seen no other.
 */
export class FleetLease {
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private reportAgain = false;
  private soonTimer: NodeJS.Timeout | undefined;
  private subscriber: Redis | undefined;
  private replicasSeen = 1;
  /** Whether Redis has answered a report yet; until then (for at most `startupWaitMs`) nothing is granted. */
  private answered = false;
  private readonly startedAt = performance.now();
  private lastRefreshAtMs = 0;
  private readonly leaseGauge: Gauge;
  private readonly replicasGauge: Gauge;
  private closed = false;

  constructor(
    private readonly redis: SharedRedis,
    private readonly holder: LeaseHolder,
    private readonly options: {
      readonly replicaId: string;
      /** The fleet's cap, all replicas together. */
      readonly capacity: number;
      /** How often a replica reports. */
      readonly refreshMs: number;
      /** How long a report holds its slots once the replica stops renewing it. */
      readonly ttlMs: number;
    },
    private readonly logger: Logger,
    registry: Registry,
  ) {
    this.leaseGauge = new Gauge({
      name: "infermesh_admission_lease_slots",
      help: "Slots of the fleet's concurrency cap this admission replica may grant now (its lease; the whole cap when not shared).",
      registers: [registry],
    });
    this.replicasGauge = new Gauge({
      name: "infermesh_admission_replicas",
      help: "Admission replicas sharing the fleet's concurrency cap, as this replica last saw them.",
      registers: [registry],
    });
    redis.client.defineCommand("infermeshFleetLease", { numberOfKeys: 3, lua: leaseScript });
  }

  /** The admission replicas sharing the cap, as last seen (1 until Redis first answers). */
  get replicas(): number {
    return this.replicasSeen;
  }

  /** Reports at once, then every `refreshMs`; listens for other replicas' rebalance calls. */
  start(): void {
    // Nothing is granted until Redis answers: a replica that starts among others must not
    // grant the whole cap while they hold theirs. Requests meanwhile wait in the queue.
    this.apply(0, this.fallbackShare());
    void this.refresh();
    this.redis.client.on("ready", () => this.refreshSoon());
    this.timer = setInterval(() => void this.refresh(), this.options.refreshMs);
    this.timer.unref();
    this.subscriber = this.redis.subscriber();
    this.subscriber.subscribe(keys.rebalanceChannel).catch(() => undefined);
    this.subscriber.on("message", (_channel, from) => {
      if (from !== this.options.replicaId) this.refreshSoon();
    });
  }

  /** Demand grew past the lease: report within a few milliseconds rather than at the next period. */
  refreshSoon(): void {
    if (this.soonTimer || this.closed) return;
    const waitMs = Math.max(0, minGapMs - (performance.now() - this.lastRefreshAtMs));
    this.soonTimer = setTimeout(() => {
      this.soonTimer = undefined;
      void this.refresh();
    }, waitMs);
    this.soonTimer.unref();
  }

  /** Stops reporting and gives the lease back at once (a clean stop frees its slots for the others without waiting out the TTL). */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.soonTimer);
    this.subscriber?.disconnect();
    await this.inFlight;
    await this.redis.client
      .multi()
      .zrem(keys.leaseReplicas, this.options.replicaId)
      .hdel(keys.leaseState, this.options.replicaId)
      .exec()
      .catch(() => undefined);
  }

  private refresh(): Promise<void> {
    if (this.closed) return Promise.resolve();
    // One report at a time. A call meanwhile sends another once it is back: the demand
    // it reports may have grown since the one under way was read.
    if (this.inFlight) {
      this.reportAgain = true;
      return this.inFlight;
    }
    this.inFlight = this.report().finally(() => {
      this.inFlight = undefined;
      if (this.reportAgain) {
        this.reportAgain = false;
        this.refreshSoon();
      }
    });
    return this.inFlight;
  }

  private async report(): Promise<void> {
    this.lastRefreshAtMs = performance.now();
    const demand = this.holder.demand();
    const { replicaId, capacity, ttlMs } = this.options;
    try {
      const [lease, replicas, wanted] = (await (this.redis.client as unknown as LeaseCommands).infermeshFleetLease(
        keys.leaseReplicas,
        keys.leaseState,
        keys.rebalanceChannel,
        replicaId,
        capacity,
        ttlMs,
        demand.inUse,
        ...classNames.map((className) => demand.perClass[className]),
      )) as [number, number, number];
      if (this.closed) return;
      this.answered = true;
      this.replicasSeen = replicas;
      this.apply(lease, Math.max(lease, Math.ceil(capacity / replicas)));
      if (wanted > lease) this.logger.debug({ lease, wanted }, "lease short of this replica's share; others asked to rebalance");
    } catch (error) {
      if (this.closed) return;
      this.redis.noteFailure(error);
      // Still connecting at start: wait a little for the first answer rather than guess.
      if (!this.answered && performance.now() - this.startedAt < startupWaitMs) return;
      const share = this.fallbackShare();
      this.apply(share, share);
    }
  }

  /** The cap split evenly over the replicas last seen: a replica cut off from Redis keeps to its part. */
  private fallbackShare(): number {
    return Math.max(1, Math.floor(this.options.capacity / this.replicasSeen));
  }

  private apply(granting: number, estimating: number): void {
    this.leaseGauge.set(granting);
    this.replicasGauge.set(this.replicasSeen);
    this.holder.setCapacity(granting, estimating);
  }
}

/** How long a starting replica waits for Redis's first answer before it grants its local share anyway. */
const startupWaitMs = 2_000;

/** Least time between two reports asked for by `refreshSoon`, so a burst of arrivals makes one. */
const minGapMs = 5;

interface LeaseCommands {
  infermeshFleetLease(...args: (string | number)[]): Promise<unknown>;
}

/**
 * KEYS: the replicas (sorted set, score = when the report expires), their reports
 * (hash: replica → "inUse lease dI dS dB"), the rebalance channel.
 * ARGV: replica, cap, ttlMs, inUse, demand per class (interactive, standard, batch).
 * Returns { lease, replicas, share }: share is what the water-filling gives this
 * replica, lease what it may take now (less while others still hold more than theirs).
 */
const leaseScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, cap, ttl, inUse = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local mine = { tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]) }

for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('ZREM', KEYS[1], gone)
  redis.call('HDEL', KEYS[2], gone)
end
redis.call('ZADD', KEYS[1], now + ttl, me)

local ids, demand, held, leased = {}, {}, {}, {}
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, id in ipairs(live) do
  if id == me then
    demand[id] = mine
    held[id] = inUse
    leased[id] = 0
  else
    local report = redis.call('HGET', KEYS[2], id)
    if report then
      local f = {}
      for word in string.gmatch(report, '%S+') do f[#f + 1] = tonumber(word) end
      demand[id] = { f[3], f[4], f[5] }
      held[id] = math.max(f[1], f[2])
      leased[id] = f[2]
    else
      demand[id] = { 0, 0, 0 }
      held[id] = 0
      leased[id] = 0
    end
  end
  ids[#ids + 1] = id
end
table.sort(ids)

-- Water-filling in priority order, then what is left evenly.
local share, left = {}, cap
for _, id in ipairs(ids) do share[id] = 0 end
for class = 1, 3 do
  local total = 0
  for _, id in ipairs(ids) do total = total + demand[id][class] end
  if total > 0 and left > 0 then
    if total <= left then
      for _, id in ipairs(ids) do share[id] = share[id] + demand[id][class] end
      left = left - total
    else
      for _, id in ipairs(ids) do share[id] = share[id] + left * demand[id][class] / total end
      left = 0
    end
  end
end
for _, id in ipairs(ids) do share[id] = share[id] + left / #ids end

-- Whole slots by largest remainder, ties by replica id: every replica computes the same split.
local whole, given, order = {}, 0, {}
for _, id in ipairs(ids) do
  whole[id] = math.floor(share[id] + 1e-9)
  given = given + whole[id]
  order[#order + 1] = id
end
table.sort(order, function(a, b)
  local ra, rb = share[a] - whole[a], share[b] - whole[b]
  if ra ~= rb then return ra > rb end
  return a < b
end)
for i = 1, cap - given do
  local id = order[((i - 1) % #order) + 1]
  whole[id] = whole[id] + 1
end

local others, surplus = 0, false
for _, id in ipairs(ids) do
  if id ~= me then
    others = others + held[id]
    if leased[id] > whole[id] then surplus = true end
  end
end
local lease = math.max(0, math.min(whole[me], cap - others))
redis.call('HSET', KEYS[2], me, string.format('%d %d %d %d %d', inUse, lease, mine[1], mine[2], mine[3]))
redis.call('PEXPIRE', KEYS[2], ttl * 10)
redis.call('PEXPIRE', KEYS[1], ttl * 10)
-- Short of our share while another still leases more than its own: ask the others to report now.
-- (Slots another has in use beyond its share come back only as they are released; no call hastens that.)
if lease < whole[me] and surplus then redis.call('PUBLISH', KEYS[3], me) end
return { lease, #ids, whole[me] }
`;
