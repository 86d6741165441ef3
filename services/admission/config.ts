import { z } from "zod";
import { integer, loadConfig, port, type ConfigSources } from "../common/config.js";

export const admissionConfigSchema = z.object({
  /** host:port of the gRPC server. */
  listen: z.string().default("127.0.0.1:50051"),
  /** Host of the Prometheus endpoint. */
  metricsHost: z.string().default("127.0.0.1"),
  /** Port of the Prometheus endpoint. */
  metricsPort: port().default(9101),
  /** Requests allowed to run at once across the fleet. */
  maxConcurrency: integer(1, 1_000_000).default(16),
  /** Requests allowed to wait; more are rejected with RESOURCE_EXHAUSTED. */
  maxQueue: integer(0, 1_000_000).default(1_024),
  /** Longest wait in the queue when the request does not say. */
  queueTimeoutMs: integer(1, 3_600_000).default(30_000),
  /** How long SIGTERM waits for open streams. */
  shutdownGraceMs: integer(0, 600_000).default(5_000),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
});

export type AdmissionConfig = z.infer<typeof admissionConfigSchema>;

export const loadAdmissionConfig = (sources: ConfigSources) =>
  loadConfig(admissionConfigSchema, sources, "INFERMESH_ADMISSION_");
