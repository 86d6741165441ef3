import type { Redis } from "ioredis";
import { TrafficSplit } from "../../gen/infermesh/router/v1/router_service.js";
import type { Logger } from "../common/logger.js";
import type { SharedRedis } from "../common/redis.js";
import type { TrafficSplits } from "./traffic-split.js";

const prefix = "{infermesh:router}";
/** Hash: model → its split (TrafficSplit as JSON). */
const splitsKey = `${prefix}:splits`;
/** Pub/sub: a replica saved a split; the others read them again. */
const changedChannel = `${prefix}:splits:changed`;
/** Read again this often anyway: a change published while a replica was cut off from Redis reaches it then. */
const rereadMs = 10_000;

/**
 * Traffic splits kept in Redis (the shared mode), so that every router replica routes
 * by the same splits and a restarted one comes back with them. Picks read the
 * in-memory TrafficSplits as before; this keeps it in step: a split set on any
 * replica is saved and announced, and every replica reads the whole set again on the
 * announcement, every 10 s, and at start.
 */
export class SharedSplits {
  private subscriber: Redis | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: SharedRedis,
    private readonly splits: TrafficSplits,
    private readonly logger: Logger,
  ) {}

  start(): void {
    void this.reread();
    this.timer = setInterval(() => void this.reread(), rereadMs);
    this.timer.unref();
    this.subscriber = this.redis.subscriber();
    this.subscriber.subscribe(changedChannel).catch(() => undefined);
    this.subscriber.on("message", () => void this.reread());
    // The first connection may come after start: read once it is there.
    this.redis.client.on("ready", () => void this.reread());
  }

  /** Saves a split that was just set here (no targets: removed) and tells the other replicas. */
  async save(split: TrafficSplit): Promise<void> {
    try {
      const multi = this.redis.client.multi();
      if (split.targets.length === 0) multi.hdel(splitsKey, split.model);
      else multi.hset(splitsKey, split.model, JSON.stringify(TrafficSplit.toJSON(split)));
      await multi.publish(changedChannel, split.model).exec();
    } catch (error) {
      this.redis.noteFailure(error);
      this.logger.warn(
        { model: split.model },
        "the traffic split is in force on the replicas that were told, but Redis did not save it: set it again once Redis is back, or a restarted replica will not have it",
      );
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.subscriber?.disconnect();
  }

  private async reread(): Promise<void> {
    let stored: Record<string, string>;
    try {
      stored = await this.redis.client.hgetall(splitsKey);
    } catch {
      return; // Redis is down: the splits in force stay; SharedRedis says so.
    }
    const splits: TrafficSplit[] = [];
    for (const [model, json] of Object.entries(stored)) {
      try {
        splits.push({ ...TrafficSplit.fromJSON(JSON.parse(json)), model });
      } catch {
        this.logger.warn({ model }, "a traffic split in Redis is not valid JSON; ignored");
      }
    }
    const problems = this.splits.replaceAll(splits);
    for (const { model, problem } of problems) this.logger.warn({ model, problem }, "a traffic split in Redis is invalid; ignored");
  }
}
