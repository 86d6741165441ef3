import { z } from "zod";
import { eventLogSetting } from "../common/decision-events.js";
import { meshSecuritySettings } from "../common/mesh-security/settings.js";
import { pickPolicies, type PickerConfig } from "./picker.js";
import { decimal, integer, loadConfig, port, type ConfigSources } from "../common/config.js";

export const routerConfigSchema = z.object({
  /** host:port of the gRPC server. */
  listen: z.string().default("127.0.0.1:50052"),
  /** Host of the Prometheus endpoint. */
  metricsHost: z.string().default("127.0.0.1"),
  /** Port of the Prometheus endpoint. */
  metricsPort: port().default(9102),
  /** host:port of memory-guard, whose pressure the router watches; empty to run without. */
  memoryGuardAddress: z.string().default("127.0.0.1:50053"),
  /** How often workers send a load report when nothing changes. */
  reportIntervalMs: integer(50, 60_000).default(1_000),
  /** Reports missed before a worker stops being picked (it is still listed). */
  staleAfterReports: integer(2, 100).default(5),
  /**
   * Prompts this long go to tensor-parallel (multi-GPU) workers when the fleet has
   * any, and in a pick among several models (balanced profile) prefer the largest context.
   */
  longPromptTokens: integer(1, 10_000_000).default(8_000),
  /**
   * score: filter → score → pick (services/router/picker.ts). round-robin and
   * least-loaded are plain load balancers' choices, for comparing against.
   */
  policy: z.enum(pickPolicies).default("score"),
  /** Scorer weights (services/router/picker.ts): outstanding requests per sequence, against the least loaded candidate's. */
  weightQueue: decimal(0, 100).default(2),
  /** KV headroom, counting the picks not yet reported. */
  weightKv: decimal(0, 100).default(1),
  /** Share of the prompt's leading blocks the worker's KV cache holds. */
  weightPrefix: decimal(0, 100).default(1),
  /** The worker this session's last turn went to. */
  weightSession: decimal(0, 100).default(2),
  /**
   * Prefill the request would wait behind and do there (the worker's queued prefill plus
   * the prompt its cache lacks), against the candidate where that is least.
   */
  weightPrefill: decimal(0, 100).default(10),
  /** Tokens added to both sides of the prefill comparison, so a few hundred tokens' difference counts little. */
  prefillFloorTokens: integer(1, 10_000_000).default(2_048),
  /** Report freshness and memory pressure. */
  weightHealth: decimal(0, 100).default(1),
  /** Room the prompt leaves in the context window. */
  weightContext: decimal(0, 100).default(0.5),
  /** Prefix and session affinity count only while outstanding requests are below this share of a worker's sequences. */
  affinitySaturation: decimal(0, 10).default(0.8),
  /** They also stop counting past this multiple of the eligible workers' mean outstanding requests, plus affinitySlack. */
  affinityImbalance: decimal(1, 100).default(1.5),
  /**
   * Outstanding requests above the fleet's share a worker may hold and keep its affinity
   * (small fleets, light load). 2, not 8: with 8, affinity let one worker hold up to
   * 2.5× the mean load (gpt-oss-120b, 64 users on 8 GPUs); it finished 1.38× the mean's
   * requests, and the fleet's tokens/s were 9 % lower than with 2 (bench:fleet --traces a
   * --preset h100-gpt-oss-120b --users 64).
   */
  affinitySlack: decimal(0, 1_000_000).default(2),
  /** Workers below this health score are avoided while healthier ones exist. */
  minHealth: decimal(0, 1).default(0.7),
  /** Candidates a pick returns; the gateway tries at most three. */
  pickCandidates: integer(1, 16).default(3),
  /**
   * A fleet larger than this is not scored whole: a pick scores the prefix holders, the
   * session's worker and this many of the least loaded workers (services/router/picker.ts).
   */
  pickScoreAtMost: integer(4, 1_000_000).default(64),
  /** Prefix blocks (64 characters each) remembered per worker. */
  prefixBlocksPerWorker: integer(16, 10_000_000).default(32_768),
  /** Sessions whose last worker is remembered. */
  sessionCapacity: integer(0, 100_000_000).default(1_000_000),
  /** A pick counts as in flight until a worker's report lists its request as arrived, or for at most this long. */
  pickExpireMs: integer(0, 60_000).default(1_000),
  /** How long SIGTERM waits for open streams. */
  shutdownGraceMs: integer(0, 600_000).default(2_000),
  ...meshSecuritySettings("router"),
  /** The level of the typed decision events (services/common/decision-events.ts); "off" writes none. */
  eventLog: eventLogSetting(),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
});

export const loadRouterConfig = (sources: ConfigSources) => loadConfig(routerConfigSchema, sources, "INFERMESH_ROUTER_");

export type RouterConfig = ReturnType<typeof loadRouterConfig>;

/** The picker's settings out of the router's. */
export function pickerConfig(config: RouterConfig): PickerConfig {
  return {
    policy: config.policy,
    weights: {
      queue: config.weightQueue,
      kv: config.weightKv,
      prefix: config.weightPrefix,
      session: config.weightSession,
      health: config.weightHealth,
      context: config.weightContext,
      prefill: config.weightPrefill,
    },
    prefillFloorTokens: config.prefillFloorTokens,
    affinitySaturation: config.affinitySaturation,
    affinityImbalance: config.affinityImbalance,
    affinitySlack: config.affinitySlack,
    minHealth: config.minHealth,
    longPromptTokens: config.longPromptTokens,
    candidates: config.pickCandidates,
    scoreAtMost: config.pickScoreAtMost,
  };
}
