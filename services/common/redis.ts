import { Redis } from "ioredis";
import type { Registry } from "prom-client";
import { Gauge } from "prom-client";
import { z } from "zod";
import type { Logger } from "./logger.js";

/**
 * The shared mode's Redis: `redis://[user:password@]host:port[/db]`, or `rediss://` for
 * TLS. Empty (the default) keeps every limit and store in the process, as one box needs.
 */
export const redisUrlSetting = () =>
  z
    .string()
    .default("")
    .refine((url) => url === "" || /^rediss?:\/\/[^\s]+$/.test(url), "expected redis://host:port or rediss://host:port");

/** The URL without its password, for logs. */
export function redactedRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "redacted";
    return parsed.toString();
  } catch {
    return "redis://(unparsable)";
  }
}

/** Least time between two log lines about failed commands: a Redis that times out every command must not flood the log. */
const failureLogEveryMs = 30_000;

/** How long a command may take before it counts as Redis being unreachable. */
const commandTimeoutMs = 500;

/**
 * A connection to the shared mode's Redis, and whether it answers. Commands fail at
 * once while it is down (no offline queue): every caller has a local fallback, and a
 * request must not wait for a reconnect. The state is a gauge and a log line on every
 * change, so an operator sees the degraded mode.
 */
export class SharedRedis {
  readonly client: Redis;
  private up = false;
  private lastFailureLogAt = Number.NEGATIVE_INFINITY;
  private readonly gauge: Gauge;

  constructor(
    url: string,
    private readonly logger: Logger,
    registry: Registry,
    /** What this process keeps in Redis and what it does without: for the log lines. */
    private readonly role: { readonly what: string; readonly fallback: string },
  ) {
    this.client = new Redis(url, {
      lazyConnect: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: commandTimeoutMs,
      connectTimeout: 2_000,
      // Keep trying, at most every 2 s: a Redis that comes back takes over again.
      retryStrategy: (attempt) => Math.min(2_000, 50 * attempt),
      connectionName: "infermesh",
    });
    this.gauge = new Gauge({
      name: "infermesh_redis_up",
      help: "Whether the shared mode's Redis answers (1) or this process runs on its local fallback (0).",
      registers: [registry],
    });
    this.gauge.set(0);
    this.client.on("ready", () => this.setUp(true));
    this.client.on("close", () => this.setUp(false));
    // Errors surface as failed commands and as the state above; ioredis logs nothing itself.
    this.client.on("error", () => undefined);
    logger.info({ redis: redactedRedisUrl(url) }, `shared mode: ${role.what} live in Redis`);
  }

  /** Whether the last connection attempt succeeded and has not closed. */
  get isUp(): boolean {
    return this.up;
  }

  /** A command failed (timed out, refused): said in the log at most every 30 s, with the fallback taken. */
  noteFailure(error: unknown): void {
    const now = performance.now();
    if (now - this.lastFailureLogAt < failureLogEveryMs) return;
    this.lastFailureLogAt = now;
    this.logger.warn({ err: error }, `a Redis command failed; ${this.role.fallback}`);
  }

  /** A second connection for subscriptions (a subscribed connection can issue no other command). */
  subscriber(): Redis {
    const copy = this.client.duplicate({ enableOfflineQueue: true, commandTimeout: undefined });
    copy.on("error", () => undefined);
    return copy;
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }

  private setUp(up: boolean): void {
    if (up === this.up) return;
    this.up = up;
    this.gauge.set(up ? 1 : 0);
    if (up) this.logger.info(`Redis is reachable; ${this.role.what} are shared again`);
    else this.logger.warn(`Redis is unreachable; ${this.role.fallback} until it returns`);
  }
}
