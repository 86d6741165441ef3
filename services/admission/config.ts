import { z } from "zod";
import { eventLogSetting } from "../common/decision-events.js";
import { meshSecuritySettings } from "../common/mesh-security/settings.js";
import { decimal, integer, loadConfig, port, type ConfigSources, optionalAddressList } from "../common/config.js";
import { redisUrlSetting } from "../common/redis.js";
import type { PerClass } from "../common/priority-classes.js";

export const admissionConfigSchema = z.object({
  /** host:port of the gRPC server. */
  listen: z.string().default("127.0.0.1:50051"),
  /** Host of the Prometheus endpoint. */
  metricsHost: z.string().default("127.0.0.1"),
  /** Port of the Prometheus endpoint. */
  metricsPort: port().default(9101),
  /** Requests allowed to run at once across the fleet. */
  maxConcurrency: integer(1, 1_000_000).default(16),
  /**
   * Share of maxConcurrency (rounded up, always leaving one slot) that only interactive
   * requests may take while interactive requests keep arriving, so a spike of other
   * work does not make a person wait for a slot to free.
   */
  interactiveHeadroom: decimal(0, 0.5).default(0.05),
  /**
   * Share of maxConcurrency (rounded up) that interactive requests may run beyond it.
   * After a surge of other work fills the fleet at once, those requests hold their slots
   * for about one hold time and few are released; interactive arrivals can outrun the
   * releases and empty the headroom. The burst lets them in anyway (the KV gate still
   * applies), so the fleet briefly runs a little over its cap instead of a person waiting.
   */
  interactiveBurst: decimal(0, 1).default(0.1),
  /** How long after the last interactive arrival the headroom stays reserved. */
  interactiveWindowMs: integer(0, 3_600_000).default(30_000),
  /**
   * Requests allowed to wait, all classes together. At the bound a more urgent arrival
   * takes the place of the waiter served last in a less urgent class; otherwise the
   * arrival is rejected (503).
   */
  maxQueue: integer(0, 1_000_000).default(1_024),
  /** Interactive requests allowed to wait; a person is waiting, so a long line helps no one. */
  maxQueueInteractive: integer(0, 1_000_000).default(256),
  /** Standard requests allowed to wait. */
  maxQueueStandard: integer(0, 1_000_000).default(1_024),
  /** Batch requests allowed to wait. */
  maxQueueBatch: integer(0, 1_000_000).default(1_024),
  /** Longest wait in the queue when the request does not say. */
  queueTimeoutMs: integer(1, 3_600_000).default(30_000),
  /**
   * A request joins the queue only while its estimated wait is within this share of its
   * queue timeout, and is refused at once (503) past it. The rest of the timeout is margin
   * for the estimate's error, so that a queued request is seldom rejected after waiting.
   */
  admitWithinShare: decimal(0.05, 1).default(0.5),
  /** Least time between two Queued updates (position, estimated wait) of one request. */
  queuedUpdateMs: integer(0, 60_000).default(500),
  /** host:port of memory-guard, whose KV pressure gates grants; replicas comma-separated (it watches one, and the next when that one fails); empty to gate by concurrency alone. */
  memoryGuardAddress: optionalAddressList().default(["127.0.0.1:50053"]),
  /** How long memory-guard's last snapshot stays in force once its Watch stream is down; then memory is ignored. */
  pressureStaleMs: integer(0, 3_600_000).default(10_000),
  /** Share of the fleet's KV that a batch grant must leave free. */
  batchHeadroomRatio: decimal(0, 0.99).default(0.15),
  /**
   * The shared mode: with a Redis URL, every admission replica enforces the same tenant
   * limits and shares maxConcurrency (each replica grants from a lease of it). Empty:
   * this process's limits are the whole mesh's, as on one box.
   */
  redisUrl: redisUrlSetting(),
  /** How often a replica reports its demand and renews its lease of maxConcurrency (shared mode). */
  leaseRefreshMs: integer(10, 10_000).default(100),
  /** How long a replica that stopped renewing keeps its slots and tenant counts (shared mode): a dead replica's are free after this. */
  leaseTtlMs: integer(100, 60_000).default(3_000),
  /** How long SIGTERM waits for open streams. */
  shutdownGraceMs: integer(0, 600_000).default(5_000),
  ...meshSecuritySettings("admission"),
  /** The level of the typed decision events (services/common/decision-events.ts); "off" writes none. */
  eventLog: eventLogSetting(),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
});

export type AdmissionConfig = ReturnType<typeof loadAdmissionConfig>;

export const loadAdmissionConfig = (sources: ConfigSources) => loadConfig(admissionConfigSchema, sources, "INFERMESH_ADMISSION_");

/**
 * What a reload changes without a restart: the limits and the classes' queues and
 * headroom. maxConcurrency too, without Redis: shared replicas divide it among
 * themselves, so there it must change on all of them at once, by a restart.
 */
export const admissionReloadable = (shared: boolean) =>
  [
    ...(shared ? [] : (["maxConcurrency"] as const)),
    "interactiveHeadroom",
    "interactiveBurst",
    "interactiveWindowMs",
    "maxQueue",
    "maxQueueInteractive",
    "maxQueueStandard",
    "maxQueueBatch",
    "queueTimeoutMs",
    "admitWithinShare",
    "queuedUpdateMs",
    "pressureStaleMs",
    "batchHeadroomRatio",
    "logLevel",
  ] as const satisfies readonly (keyof AdmissionConfig)[];

/** The scheduler's reloadable settings out of the config: the headroom and burst in slots. */
export const schedulerSettings = (config: AdmissionConfig) => ({
  capacity: config.maxConcurrency,
  maxQueue: config.maxQueue,
  maxQueuePerClass: maxQueuePerClass(config),
  queuedUpdateMs: config.queuedUpdateMs,
  interactiveHeadroom: Math.min(config.maxConcurrency - 1, Math.ceil(config.interactiveHeadroom * config.maxConcurrency)),
  interactiveWindowMs: config.interactiveWindowMs,
  interactiveBurst: Math.ceil(config.interactiveBurst * config.maxConcurrency),
  admitWithinShare: config.admitWithinShare,
});

/** The per-class queue bounds out of the settings. */
export const maxQueuePerClass = (config: AdmissionConfig): PerClass<number> => ({
  interactive: config.maxQueueInteractive,
  standard: config.maxQueueStandard,
  batch: config.maxQueueBatch,
});
