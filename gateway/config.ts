import { z } from "zod";
import { integer, loadConfig, port, type ConfigSources } from "../services/common/config.js";

export const gatewayConfigSchema = z.object({
  /** Host of the HTTP API. */
  host: z.string().default("127.0.0.1"),
  /** Port of the HTTP API (OpenAI-compatible). */
  port: port().default(8000),
  /** host:port of the public gRPC API. */
  grpcListen: z.string().default("127.0.0.1:50050"),
  /** host:port of admission. */
  admissionAddress: z.string().default("127.0.0.1:50051"),
  /** host:port of the router. */
  routerAddress: z.string().default("127.0.0.1:50052"),
  /** Deadline of every unary call into the mesh. */
  unaryTimeoutMs: integer(1, 600_000).default(5_000),
  /** How long the model list from the router is reused. */
  modelCacheMs: integer(0, 600_000).default(1_000),
  /** Output bound assumed for admission when a request sets none. */
  defaultMaxTokens: integer(1, 1_048_576).default(256),
  /** Largest accepted request body. */
  bodyLimitBytes: integer(1_024, 1_073_741_824).default(8 * 1024 * 1024),
  /** How long SIGTERM waits for open requests. */
  shutdownGraceMs: integer(0, 600_000).default(10_000),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
});

export const loadGatewayConfig = (sources: ConfigSources) => loadConfig(gatewayConfigSchema, sources, "INFERMESH_GATEWAY_");
