import { z } from "zod";
import { boolean, integer, loadConfig, type ConfigSources } from "../common/config.js";

export const launcherConfigSchema = z.object({
  /** Interface every service binds to. */
  host: z.string().default("127.0.0.1"),
  /** Worker processes to run (one per GPU; on a CPU box one is usually right). */
  workers: integer(1, 64).default(1),
  /** Give worker i the GPU with index i (one worker per GPU); off shares every visible GPU. */
  gpuPerWorker: boolean().default(false),
  /** GGUF for every worker; empty serves the generated test model. */
  modelPath: z.string().default(""),
  /**
   * Where the local mesh CA and the services' certificates live; made on first start,
   * never replaced by surprise (delete the directory to start over).
   */
  pkiDir: z.string().min(1).default(".cache/pki"),
  /** Plaintext internal gRPC with no identities and no authorization: for debugging only; every service warns at start. */
  insecure: boolean().default(false),
  /** "pretty" for people, "json" to pass the services' JSON lines through. */
  logFormat: z.enum(["pretty", "json"]).default("pretty"),
});

export const loadLauncherConfig = (sources: ConfigSources) => loadConfig(launcherConfigSchema, sources, "INFERMESH_");
