import { resolve } from "node:path";
import { z } from "zod";
import { loadGatewayConfig } from "../../gateway/config.js";
import { boolean, ConfigError, integer, kebab, loadConfig, type ConfigSources } from "../common/config.js";
import { userCacheDir } from "../common/paths.js";
import { redisUrlSetting } from "../common/redis.js";
import { workerConfigSchema } from "../worker/config.js";
import { simPresets } from "../worker/engines/sim/sim-options.js";
import { chooseEngine, engineNames, type EngineChoice } from "./engine-choice.js";
import { defaultPorts, meshPorts, type MeshPorts } from "./mesh.js";

// What each setting means is in `settingHelp` below, which --help prints.
export const launcherConfigSchema = z.object({
  host: z.string().default("127.0.0.1"),
  port: integer(1, 65_535).optional(),
  grpcPort: integer(1, 65_535).optional(),
  portOffset: integer(0, 65_535).default(0),
  model: z.string().default(""),
  engine: z.enum(engineNames).optional(),
  upstreamUrl: z
    .string()
    .refine((url) => url === "" || /^https?:\/\/[^/]/.test(url), "expected an http:// or https:// URL")
    .default(""),
  gatewayConfig: z.string().default(""),
  workers: integer(1, 64).default(1),
  controlPlaneReplicas: integer(1, 8).default(1),
  routerReplicas: integer(1, 8).optional(),
  redisUrl: redisUrlSetting(),
  gpuPerWorker: boolean().default(false),
  pkiDir: z.string().default(""),
  stateDir: z.string().default(""),
  insecure: boolean().default(false),
  logFormat: z.enum(["pretty", "json"]).default("pretty"),
});

type LauncherSettings = z.infer<typeof launcherConfigSchema>;

/** The launcher's settings, completed and checked: where every process listens, which engine the workers run. */
export interface LauncherConfig extends Readonly<LauncherSettings> {
  /** Absolute; the per-user cache's pki/ unless given. */
  readonly pkiDir: string;
  /** Absolute; the per-user cache's state/ unless given. */
  readonly stateDir: string;
  /** Absolute, or "" for none. */
  readonly gatewayConfig: string;
  readonly ports: MeshPorts;
  readonly engineChoice: EngineChoice;
}

/** What `--help` says of each setting: the value it takes, what it does, and its default where the schema has none. */
const settingHelp: { readonly [Key in keyof LauncherSettings]: { value: string; text: string; default?: string } } = {
  port: { value: "N", text: "gateway HTTP port, the OpenAI API", default: `${defaultPorts.gatewayHttp} + port offset` },
  grpcPort: { value: "N", text: "gateway public gRPC port", default: `${defaultPorts.gatewayGrpc} + port offset` },
  portOffset: { value: "N", text: "added to every port of the mesh, internal and metrics ones too" },
  model: { value: "PATH|NAME", text: "a .gguf file, sim[:<preset>], or an upstream model name", default: "the test model" },
  engine: { value: engineNames.join("|"), text: "the workers' engine; must agree with --model", default: "from --model" },
  upstreamUrl: { value: "URL", text: "the openai engine's server (vLLM, SGLang, …), without /v1" },
  gatewayConfig: { value: "FILE", text: "the gateway's config file: API keys, auth, profiles" },
  workers: { value: "N", text: "worker processes, one per GPU" },
  controlPlaneReplicas: {
    value: "N",
    text: "processes of router, admission and memory-guard each, active-active (replica k listens 1,000 × k above the first); several admissions need --redis-url",
  },
  routerReplicas: {
    value: "N",
    text: "router processes, when they should differ from --control-plane-replicas",
    default: "--control-plane-replicas",
  },
  redisUrl: { value: "URL", text: "the shared mode's Redis (redis://host:port): admission replicas share their limits there" },
  gpuPerWorker: { value: "true|false", text: "give worker i the GPU with index i" },
  host: { value: "HOST", text: "interface every service binds to" },
  pkiDir: { value: "DIR", text: "the local mesh CA and certificates, made on first start" },
  stateDir: { value: "DIR", text: "what survives a restart without Redis: the routers' canary rollouts" },
  insecure: { value: "true|false", text: "plaintext internal gRPC, no identities: debugging only" },
  logFormat: { value: "pretty|json", text: "pretty for people; json passes the services' lines through" },
};

/** The `--help` text: every setting with its default, and how the engine follows from the model. */
export function launcherUsage(env: ConfigSources["env"]): string {
  const defaults: Record<string, unknown> = {
    ...launcherConfigSchema.parse({}),
    pkiDir: defaultPkiDir(env),
    stateDir: defaultStateDir(env),
  };
  const rows = Object.entries(settingHelp).map(([key, help]) => {
    const fallback = help.default ?? (defaults[key] === "" ? "none" : String(defaults[key]));
    return [`  --${kebab(key)} ${help.value}`, `${help.text} (default: ${fallback})`];
  });
  rows.push(["  --config FILE", "these settings from a YAML or JSON file (camelCase names)"], ["  -h, --help", "this text"]);
  const width = Math.max(...rows.map(([flag]) => flag!.length)) + 2;
  return `Usage: npm start -- [flags]   (or: node dist/services/launcher/main.js [flags])

Runs the whole mesh on this machine, each service its own process: gateway, admission,
router, memory-guard and the workers.

${rows.map(([flag, text]) => `${flag!.padEnd(width)}${text}`).join("\n")}

Every setting may also come from INFERMESH_<SETTING> (e.g. INFERMESH_PORT_OFFSET=100,
INFERMESH_MODEL=/models/gpt-oss-20b-mxfp4.gguf); flags win over the environment, the
environment over the file.

The engine follows from --model:
  /models/gpt-oss-20b-mxfp4.gguf        llamacpp: the GGUF in-process
  org/name with --upstream-url URL      openai: that model of the upstream server
  sim or sim:<preset>                   sim: the GPU simulator (presets: ${Object.keys(simPresets).join(", ")})
  none                                  llamacpp on the generated test model, cached in
                                        ${userCacheDir(env, "models")}
                                        (with --upstream-url: every model the upstream lists)

Other settings of the services pass through the environment, e.g.
INFERMESH_WORKER_CONTEXT_TOKENS=8192 or INFERMESH_GATEWAY_AUTH=required.

Two meshes side by side: npm start -- --engine sim --port-offset 100
`;
}

/** Whether the command line asks for `--help`. */
export const asksForHelp = (argv: readonly string[]) => argv.includes("--help") || argv.includes("-h");

/** The launcher's PKI directory when none is given: one per user, so every working directory shares one mesh CA. */
export const defaultPkiDir = (env: ConfigSources["env"]) => userCacheDir(env, "pki");
export const defaultStateDir = (env: ConfigSources["env"]) => userCacheDir(env, "state");

/**
 * Environment variables that chose what `npm start` serves before the launcher chose
 * the engine itself, and the setting that does now. The launcher passes its choice to
 * the workers as flags, which would silently win over them.
 */
const replacedVariables: Readonly<Record<string, string>> = {
  INFERMESH_MODEL_PATH: "--model (INFERMESH_MODEL)",
  INFERMESH_WORKER_MODEL_PATH: "--model (INFERMESH_MODEL)",
  INFERMESH_WORKER_ENGINE: "--engine (INFERMESH_ENGINE)",
  INFERMESH_WORKER_UPSTREAM_URL: "--upstream-url (INFERMESH_UPSTREAM_URL)",
  INFERMESH_WORKER_UPSTREAM_MODEL_IDS: "--model (INFERMESH_MODEL)",
  INFERMESH_WORKER_SIM_PRESET: "--model sim:<preset> (INFERMESH_MODEL)",
};

/** Parses and checks the launcher's settings (defaults, `--config`/INFERMESH_CONFIG file, INFERMESH_* variables, flags). */
export function loadLauncherConfig(sources: ConfigSources): LauncherConfig {
  const replaced = Object.keys(replacedVariables).filter((variable) => (sources.env[variable] ?? "") !== "");
  if (replaced.length > 0) {
    throw new ConfigError(
      `invalid configuration:\n  ${replaced.map((variable) => `${variable} is set, but npm start takes ${replacedVariables[variable]} instead`).join("\n  ")}`,
    );
  }
  const settings = loadConfig(launcherConfigSchema, sources, "INFERMESH_");
  const invalid = (error: unknown) =>
    new ConfigError(`invalid configuration:\n  ${error instanceof Error ? error.message : String(error)}`);

  let ports: MeshPorts;
  let engineChoice: EngineChoice;
  try {
    ports = meshPorts({
      offset: settings.portOffset,
      gatewayHttp: settings.port,
      gatewayGrpc: settings.grpcPort,
      workers: settings.workers,
      replicas: {
        router: settings.routerReplicas ?? settings.controlPlaneReplicas,
        admission: settings.controlPlaneReplicas,
        memoryGuard: settings.controlPlaneReplicas,
      },
    });
    if (settings.controlPlaneReplicas > 1 && settings.redisUrl === "") {
      throw new Error(
        "--control-plane-replicas above 1 needs --redis-url: admission replicas share tenant limits and the fleet's concurrency cap through Redis, and without it every limit would multiply by the replica count",
      );
    }
    engineChoice = chooseEngine({
      engine: settings.engine,
      model: settings.model,
      upstreamUrl: settings.upstreamUrl,
      defaultSimPreset: workerConfigSchema.shape.simPreset.parse(undefined),
    });
  } catch (error) {
    throw invalid(error);
  }
  const gatewayConfig = settings.gatewayConfig === "" ? "" : resolve(settings.gatewayConfig);
  if (gatewayConfig !== "") {
    // Checked here, since the gateway would find a bad file only once started, and again at every restart.
    try {
      loadGatewayConfig({ argv: ["--config", gatewayConfig], env: sources.env });
    } catch (error) {
      throw new ConfigError(`the gateway refuses --gateway-config ${gatewayConfig}: ${(error as Error).message}`);
    }
  }
  return Object.freeze({
    ...settings,
    pkiDir: resolve(settings.pkiDir || defaultPkiDir(sources.env)),
    stateDir: resolve(settings.stateDir || defaultStateDir(sources.env)),
    gatewayConfig,
    ports,
    engineChoice,
  });
}
