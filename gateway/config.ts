import { z } from "zod";
import { redisUrlSetting } from "../services/common/redis.js";
import { eventLogSetting } from "../services/common/decision-events.js";
import { meshSecuritySettings } from "../services/common/mesh-security/settings.js";
import { addressList, boolean, integer, loadConfig, port, type ConfigSources } from "../services/common/config.js";
import { apiKeySchema } from "./access/api-keys.js";
import { aliasSchema, defaultAliases, defaultProfiles, profileNames, profileSchema } from "./access/profiles.js";

/** A structured setting: from a config file as is, from env or a flag as JSON text. */
const json = <Schema extends z.ZodType>(schema: Schema) =>
  z.preprocess((value, context) => {
    if (typeof value !== "string") return value;
    try {
      return JSON.parse(value);
    } catch {
      context.addIssue({ code: "custom", message: "expected JSON text" });
      return z.NEVER;
    }
  }, schema);

export const gatewayConfigSchema = z.object({
  /** Host of the HTTP API. */
  host: z.string().default("127.0.0.1"),
  /** Port of the HTTP API (OpenAI-compatible). */
  port: port().default(8000),
  /** host:port of the public gRPC API. */
  grpcListen: z.string().default("127.0.0.1:50050"),
  /** host:port of admission; replicas comma-separated (they share limits through Redis), asked in turn with failover. */
  admissionAddress: addressList().default(["127.0.0.1:50051"]),
  /** host:port of the router; replicas comma-separated (picks spread over them and fail over). */
  routerAddress: addressList().default(["127.0.0.1:50052"]),
  /**
   * The shared mode's Redis: stored Responses (previous_response_id, retrieve) and the
   * response cache live there, so every gateway replica answers them. Empty: in memory.
   */
  redisUrl: redisUrlSetting(),
  /** host:port of memory-guard (only bug reports ask it); replicas comma-separated. */
  memoryGuardAddress: addressList().default(["127.0.0.1:50053"]),
  /** Deadline of every unary call into the mesh. */
  unaryTimeoutMs: integer(1, 600_000).default(5_000),
  /** How long the model list from the router is reused. */
  modelCacheMs: integer(0, 600_000).default(1_000),
  /**
   * The whole request's deadline, queueing included: past it a request still waiting
   * gets 504 (DEADLINE_EXCEEDED over gRPC), and a stream that already started ends
   * with an error event; the worker's decoding is cancelled either way. 10 minutes,
   * the OpenAI SDK's own timeout.
   */
  requestTimeoutMs: integer(100, 86_400_000).default(600_000),
  /** Largest accepted request body. */
  bodyLimitBytes: integer(1_024, 1_073_741_824).default(8 * 1024 * 1024),
  /** "required": every API call needs a configured key. "off" (local default): keys only classify. */
  auth: z.enum(["off", "required"]).default("off"),
  /** API keys with their tenants, priorities, profiles and limits (a list; JSON from env). */
  apiKeys: json(z.array(apiKeySchema)).default([]),
  /** The profile of a request that names none and whose key names none. */
  defaultProfile: z.enum(profileNames).default("balanced"),
  /** The serving profiles; a file may override any of the three. */
  profiles: json(z.object({ latency_first: profileSchema, quality_first: profileSchema, balanced: profileSchema }).partial())
    .default({})
    .transform((given) => ({ ...defaultProfiles, ...given })),
  /** Names clients may put in `model` instead of an id, e.g. "gpt-oss:quality". */
  aliases: json(z.record(z.string().min(1), aliasSchema)).default(defaultAliases),
  /** Origins allowed to call from a browser ("*" for any); empty turns CORS off. */
  corsOrigins: json(z.array(z.string().min(1))).default([]),
  /** Answers deterministic whole-answer requests from memory (opt-in). */
  responseCache: boolean().default(false),
  /** Bytes the response cache may hold. */
  responseCacheMaxBytes: integer(1_024, 68_719_476_736).default(64 * 1024 * 1024),
  /** How long a cached answer is served; 0 keeps it until evicted. */
  responseCacheTtlMs: integer(0, 604_800_000).default(600_000),
  /**
   * Identical deterministic requests (temperature 0 or a seed) of one tenant that arrive
   * while one runs share its generation instead of generating again (opt-in, and per key:
   * `dedupeRequests` on the key; callers without a key share when this is on).
   */
  dedupeRequests: boolean().default(false),
  /** Bytes stored Responses (previous_response_id, GET /v1/responses/{id}) may hold in all. */
  responsesMaxBytes: integer(0, 68_719_476_736).default(256 * 1024 * 1024),
  /** Bytes one tenant's stored Responses may hold; its oldest make room first. */
  responsesTenantMaxBytes: integer(0, 68_719_476_736).default(64 * 1024 * 1024),
  /** How long a stored Response is kept after its last use; 0 keeps it until evicted. */
  responsesTtlMs: integer(0, 2_592_000_000).default(86_400_000),
  /**
   * The level of the one access event each request writes when it ends (request id,
   * trace id, tenant, model, profile, class, API, outcome, timings, tokens, worker, pick
   * reason; never its prompt or output); "off" writes none.
   */
  accessLog: eventLogSetting("info"),
  /** How long SIGTERM waits for open requests. */
  shutdownGraceMs: integer(0, 600_000).default(10_000),
  ...meshSecuritySettings("gateway"),
  /** The level of the typed decision events (services/common/decision-events.ts); "off" writes none. */
  eventLog: eventLogSetting(),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
});

export type GatewayConfig = z.infer<typeof gatewayConfigSchema>;

/**
 * What a reload changes without a restart: keys and their tenants, limits and classes,
 * auth, profiles, aliases, the response cache, the log level. The rest (ports,
 * addresses, Redis, TLS, timeouts) takes a restart, and a reload that changes it says so.
 */
export const gatewayReloadable = [
  "auth",
  "apiKeys",
  "defaultProfile",
  "profiles",
  "aliases",
  "responseCache",
  "responseCacheMaxBytes",
  "responseCacheTtlMs",
  "logLevel",
] as const satisfies readonly (keyof GatewayConfig)[];

export const loadGatewayConfig = (sources: ConfigSources) => loadConfig(gatewayConfigSchema, sources, "INFERMESH_GATEWAY_");
