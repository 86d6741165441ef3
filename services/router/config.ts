import { z } from "zod";
import { redisUrlSetting } from "../common/redis.js";
import { eventLogSetting } from "../common/decision-events.js";
import { meshSecuritySettings } from "../common/mesh-security/settings.js";
import { pickPolicies, type SchedulerConfig } from "./scheduling/scheduler.js";
import { defaultScorerWeights, scorers } from "./scheduling/scorers/index.js";
import { decimal, integer, loadConfig, port, type ConfigSources, optionalAddressList } from "../common/config.js";

export const routerConfigSchema = z.object({
  /** host:port of the gRPC server. */
  listen: z.string().default("127.0.0.1:50052"),
  /** Host of the Prometheus endpoint. */
  metricsHost: z.string().default("127.0.0.1"),
  /** Port of the Prometheus endpoint. */
  metricsPort: port().default(9102),
  /** The shared mode's Redis: traffic splits are kept there, so every replica and a restarted one route by the same. Empty: in memory. */
  redisUrl: redisUrlSetting(),
  /** host:port of memory-guard, whose pressure the router watches; replicas comma-separated (it watches one, and the next when that one fails); empty to run without. */
  memoryGuardAddress: optionalAddressList().default(["127.0.0.1:50053"]),
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
   * score: filter → score → pick (services/router/scheduling/). round-robin and
   * least-loaded are plain load balancers' choices, for comparing against.
   */
  policy: z.enum(pickPolicies).default("score"),
  /**
   * The scorers a pick runs, each with its weight (services/router/scheduling/scorers/,
   * one file each): queue (outstanding requests per sequence, against the least loaded
   * candidate's), prefill (the prefill the request would wait behind and do there),
   * kv (KV headroom), prefix (the share of the prompt the worker's cache holds),
   * session (the worker of the session's last turn), health, context (room left in the
   * context window). A mapping in a config file; `queue=2,kv=1,…` as a flag or variable.
   */
  scorers: z.preprocess(
    (value) => (typeof value === "string" ? parseWeights(value) : value),
    z
      .record(z.string(), decimal(0, 100))
      .refine((weights) => Object.keys(weights).length > 0, "at least one scorer")
      .superRefine((weights, context) => {
        for (const name of Object.keys(weights)) {
          if (!(name in scorers))
            context.addIssue({ code: "custom", message: `unknown scorer "${name}"; known: ${Object.keys(scorers).join(", ")}` });
        }
      })
      .default({ ...defaultScorerWeights }),
  ),
  /** Tokens added to both sides of the prefill comparison, so a few hundred tokens' difference counts little. */
  prefillFloorTokens: integer(1, 10_000_000).default(2_048),
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
   * session's worker and this many of the least loaded workers (services/router/scheduling/pickers/scoring.ts).
   */
  pickScoreAtMost: integer(4, 1_000_000).default(64),
  /** Prefix blocks (64 characters each) remembered per worker. */
  prefixBlocksPerWorker: integer(16, 10_000_000).default(32_768),
  /** Sessions whose last worker is remembered. */
  sessionCapacity: integer(0, 100_000_000).default(1_000_000),
  /** A pick counts as in flight until a worker's report lists its request as arrived, or for at most this long. */
  pickExpireMs: integer(0, 60_000).default(1_000),
  /**
   * Where a router without Redis keeps its canary rollouts, so that a restart resumes
   * them (with Redis they live there). Empty: in memory.
   */
  rolloutStateFile: z.string().default(""),
  /** How often the rollouts' driver judges each canary: the longest a broken one runs once its window has enough samples. */
  rolloutTickMs: integer(100, 60_000).default(1_000),
  /** How long SIGTERM waits for open streams. */
  shutdownGraceMs: integer(0, 600_000).default(2_000),
  ...meshSecuritySettings("router"),
  /** The level of the typed decision events (services/common/decision-events.ts); "off" writes none. */
  eventLog: eventLogSetting(),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
});

export const loadRouterConfig = (sources: ConfigSources) => loadConfig(routerConfigSchema, sources, "INFERMESH_ROUTER_");

export type RouterConfig = ReturnType<typeof loadRouterConfig>;

/** What a reload changes without a restart: how picks are made (policy, scorer weights, filters, affinity) and the log level. */
export const routerReloadable = [
  "policy",
  "scorers",
  "prefillFloorTokens",
  "affinitySaturation",
  "affinityImbalance",
  "affinitySlack",
  "minHealth",
  "longPromptTokens",
  "pickCandidates",
  "pickScoreAtMost",
  "logLevel",
] as const satisfies readonly (keyof RouterConfig)[];

/** `queue=2,kv=1`: weights by scorer name, as a flag or an environment variable gives them. */
function parseWeights(text: string): Record<string, unknown> {
  return Object.fromEntries(
    text
      .split(",")
      .filter((entry) => entry.trim() !== "")
      .map((entry) => {
        const [name = "", weight = ""] = entry.split("=", 2).map((part) => part.trim());
        return [name, weight];
      }),
  );
}

/** The scheduler's settings out of the router's. */
export function schedulerConfig(config: RouterConfig): SchedulerConfig {
  return {
    policy: config.policy,
    scorers: config.scorers,
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
