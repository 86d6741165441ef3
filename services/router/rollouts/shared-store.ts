import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { Rollout } from "../../../gen/infermesh/router/v1/router_service.js";
import type { Logger } from "../../common/logger.js";
import type { SharedRedis } from "../../common/redis.js";
import type { DriverRole, RolloutStore } from "./store.js";

const prefix = "{infermesh:router}";
/** Hash: model → its rollout (Rollout as JSON). */
const rolloutsKey = `${prefix}:rollouts`;
/** Hash: model → its rollout's id, what a driver's update is checked against. */
const idsKey = `${prefix}:rollouts:ids`;
/** String: the replica that drives the rollouts, with a TTL. */
const driverKey = `${prefix}:rollouts:driver`;
/** Pub/sub: a rollout changed; the other replicas read them again. */
const changedChannel = `${prefix}:rollouts:changed`;
/** A driver that stops renewing (it died) hands over after this long. */
const driverLeaseMs = 5_000;
/** Read again this often anyway, for a change announced while a replica was cut off. */
const rereadMs = 10_000;

/** Saves a rollout only while its model's stored rollout has the same id, and announces it. */
const updateScript = `
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('PUBLISH', KEYS[3], ARGV[1])
return 1`;

/** Takes the driver's lease when free or renews it when ours. */
const holdScript = `
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`;

/** Gives the lease back when ours. */
const releaseScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/**
 * Rollouts kept in Redis (the shared mode): every router replica lists the same, a
 * restarted one resumes them, and one replica at a time drives them, the holder of a
 * lease it renews every tick. A driver that dies hands over within `driverLeaseMs`.
 */
export class SharedRolloutStore implements RolloutStore {
  private readonly replicaId = randomUUID();
  private subscriber: Redis | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: SharedRedis,
    private readonly logger: Logger,
  ) {}

  async load(): Promise<Rollout[]> {
    const stored = await this.redis.client.hgetall(rolloutsKey);
    const rollouts: Rollout[] = [];
    for (const [model, json] of Object.entries(stored)) {
      try {
        rollouts.push(Rollout.fromJSON(JSON.parse(json)));
      } catch {
        this.logger.warn({ model }, "a rollout in Redis is not valid JSON; ignored");
      }
    }
    return rollouts;
  }

  async replace(rollout: Rollout): Promise<void> {
    const model = rollout.spec!.model;
    await this.redis.client
      .multi()
      .hset(rolloutsKey, model, JSON.stringify(Rollout.toJSON(rollout)))
      .hset(idsKey, model, rollout.id)
      .publish(changedChannel, model)
      .exec();
  }

  async update(rollout: Rollout): Promise<boolean> {
    const saved = await this.redis.client.eval(
      updateScript,
      3,
      rolloutsKey,
      idsKey,
      changedChannel,
      rollout.spec!.model,
      rollout.id,
      JSON.stringify(Rollout.toJSON(rollout)),
    );
    return saved === 1;
  }

  async remove(model: string): Promise<void> {
    await this.redis.client.multi().hdel(rolloutsKey, model).hdel(idsKey, model).publish(changedChannel, model).exec();
  }

  async holdDriver(): Promise<DriverRole> {
    try {
      const held = await this.redis.client.eval(holdScript, 1, driverKey, this.replicaId, driverLeaseMs);
      return held === 1 ? "driver" : "follower";
    } catch (error) {
      this.redis.noteFailure(error);
      return "unreachable";
    }
  }

  onChange(listener: () => void): void {
    this.timer = setInterval(listener, rereadMs);
    this.timer.unref();
    this.subscriber = this.redis.subscriber();
    this.subscriber.subscribe(changedChannel).catch(() => undefined);
    this.subscriber.on("message", listener);
    this.redis.client.on("ready", listener);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.subscriber?.disconnect();
    await this.redis.client.eval(releaseScript, 1, driverKey, this.replicaId).catch(() => undefined);
  }
}
