import { z } from "zod";
import { eventLogSetting } from "../common/decision-events.js";
import { meshSecuritySettings } from "../common/mesh-security/settings.js";
import { integer, loadConfig, port, type ConfigSources } from "../common/config.js";

export const memoryGuardConfigSchema = z
  .object({
    /** host:port of the gRPC server. */
    listen: z.string().default("127.0.0.1:50053"),
    /** Host of the Prometheus endpoint. */
    metricsHost: z.string().default("127.0.0.1"),
    /** Port of the Prometheus endpoint. */
    metricsPort: port().default(9103),
    /** Usage ratio at which a device enters warn pressure. */
    warnRatio: z.coerce.number().gt(0).lt(1).default(0.85),
    /** Usage ratio at which a device enters critical pressure. */
    criticalRatio: z.coerce.number().gt(0).max(1).default(0.95),
    /** How long SIGTERM waits for open streams. */
    shutdownGraceMs: integer(0, 600_000).default(2_000),
    ...meshSecuritySettings("memory-guard"),
    /** The level of the typed decision events (services/common/decision-events.ts); "off" writes none. */
    eventLog: eventLogSetting(),
    logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
  })
  .refine((config) => config.warnRatio < config.criticalRatio, {
    path: ["warnRatio"],
    message: "must be below criticalRatio",
  });

/** What a reload changes without a restart: the pressure levels and the log level. */
export const memoryGuardReloadable = ["warnRatio", "criticalRatio", "logLevel"] as const;

export const loadMemoryGuardConfig = (sources: ConfigSources) => loadConfig(memoryGuardConfigSchema, sources, "INFERMESH_MEMORY_GUARD_");
