import { defaultTrustDomain } from "../common/mesh-security/identity.js";
import { ensureLocalPki } from "../common/mesh-security/local-pki.js";
import { exitOnStartupFailure } from "../common/lifecycle.js";
import { asksForHelp, launcherUsage, loadLauncherConfig } from "./config.js";
import { lineFormatter } from "./log-format.js";
import { listeningPorts, meshChildren, telemetryImport } from "./mesh.js";
import { LauncherOutput } from "./output.js";
import { portsTaken } from "./port-check.js";
import { describeModels, waitUntilReady } from "./readiness.js";
import { Supervisor } from "./supervisor.js";

/** `npm start`: the whole mesh as separate processes under one supervisor. */
const argv = process.argv.slice(2);
if (asksForHelp(argv)) {
  process.stdout.write(launcherUsage(process.env));
} else {
  try {
    const config = loadLauncherConfig({ argv, env: process.env });
    const terminal = process.stdout.isTTY === true;
    const output = new LauncherOutput(
      { stdout: (text) => process.stdout.write(text), stderr: (text) => process.stderr.write(text) },
      lineFormatter(config.logFormat, terminal),
      terminal && config.logFormat === "pretty",
    );
    const say = (message: string) => output.say(message);
    const taken = await portsTaken(config.host, listeningPorts(config.ports, config.workers));
    if (taken.length > 0) {
      throw new Error(
        `${taken.map(([what, port]) => `port ${port} (${what})`).join(", ")} ${taken.length > 1 ? "are" : "is"} in use, perhaps by another mesh; ` +
          "choose other ports with --port-offset N",
      );
    }
    say(`engine ${config.engineChoice.engine} (${config.engineChoice.reason})`);
    if (config.insecure) {
      say("insecure is set: internal gRPC runs in plaintext with no identities; anyone who can reach a service's port can call it");
    } else {
      const pki = await ensureLocalPki(config.pkiDir, defaultTrustDomain);
      if (pki.issued.length > 0) say(`mesh CA and certificates for ${pki.issued.join(", ")} made in ${config.pkiDir}`);
      for (const { file, notAfter } of pki.expiring)
        say(`warning: ${file} ends ${notAfter.toISOString()}; delete ${config.pkiDir} to make a new CA and certificates`);
    }
    const supervisor = new Supervisor({
      nodeArgs: telemetryImport(),
      onLine: (child, line, stream) => output.childLine(child, line, stream),
      onEvent: say,
    });
    supervisor.start(
      meshChildren({
        ports: config.ports,
        host: config.host,
        workers: config.workers,
        gpuPerWorker: config.gpuPerWorker,
        workerArgs: config.engineChoice.workerArgs,
        gatewayArgs: config.gatewayConfig === "" ? [] : ["--config", config.gatewayConfig],
        security: config.insecure ? "insecure" : { pkiDir: config.pkiDir },
        redisUrl: config.redisUrl,
        stateDir: config.stateDir,
      }),
    );

    const lifetime = new AbortController();
    const stop = (signal: string) => {
      if (lifetime.signal.aborted) return;
      lifetime.abort();
      say(`${signal}: stopping all services`);
      supervisor.stop().then(() => {
        say("stopped");
        process.exit(0);
      });
    };
    process.on("SIGINT", () => stop("SIGINT"));
    process.on("SIGTERM", () => stop("SIGTERM"));
    // kill -HUP <launcher>: every service reloads its configuration.
    process.on("SIGHUP", () => {
      const told = supervisor.signal("SIGHUP", () => true);
      say(`SIGHUP: ${told.join(", ")} reload their configuration`);
    });

    const baseUrl = `http://${config.host}:${config.ports.gatewayHttp}`;
    const ready = await waitUntilReady({
      baseUrl,
      signal: lifetime.signal,
      onStillWaiting: () => say("still waiting for a worker to load its model…"),
    });
    if (ready) {
      say(`ready: OpenAI API at ${baseUrl}/v1, gRPC API at ${config.host}:${config.ports.gatewayGrpc}; ${await describeModels(baseUrl)}`);
    }
  } catch (error) {
    exitOnStartupFailure(undefined, error);
  }
}
