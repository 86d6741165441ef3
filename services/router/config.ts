import { z } from "zod";
import { integer, loadConfig, port, type ConfigSources } from "../common/config.js";

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
  /** In a pick among several models (balanced profile), prompts this long prefer the largest context. */
  longPromptTokens: integer(1, 10_000_000).default(8_000),
  /** How long SIGTERM waits for open streams. */
  shutdownGraceMs: integer(0, 600_000).default(2_000),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
});

export const loadRouterConfig = (sources: ConfigSources) => loadConfig(routerConfigSchema, sources, "INFERMESH_ROUTER_");
