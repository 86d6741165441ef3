import { resolve } from "node:path";
import { defaultTrustDomain } from "../common/mesh-security/identity.js";
import { ensureLocalPki } from "../common/mesh-security/local-pki.js";
import { exitOnStartupFailure } from "../common/lifecycle.js";
import { loadLauncherConfig } from "./config.js";
import { lineFormatter } from "./log-format.js";
import { defaultPorts, meshChildren, telemetryImport } from "./mesh.js";
import { describeModels, waitUntilReady } from "./readiness.js";
import { Supervisor } from "./supervisor.js";

/** `npm start`: the whole mesh as separate processes under one supervisor. */
try {
  const config = loadLauncherConfig({ argv: process.argv.slice(2), env: process.env });
  const format = lineFormatter(config.logFormat, process.stdout.isTTY === true);
  const say = (message: string) => process.stdout.write(`${format("infermesh", message)}\n`);
  const pkiDir = resolve(config.pkiDir);
  if (config.insecure) {
    say("insecure is set: internal gRPC runs in plaintext with no identities; anyone who can reach a service's port can call it");
  } else {
    const pki = await ensureLocalPki(pkiDir, defaultTrustDomain);
    if (pki.issued.length > 0) say(`mesh CA and certificates for ${pki.issued.join(", ")} made in ${pkiDir}`);
    for (const { file, notAfter } of pki.expiring)
      say(`warning: ${file} ends ${notAfter.toISOString()}; delete ${pkiDir} to make a new CA and certificates`);
  }
  const supervisor = new Supervisor({
    nodeArgs: telemetryImport(),
    onLine: (child, line, stream) => (stream === "stderr" ? process.stderr : process.stdout).write(`${format(child, line)}\n`),
    onEvent: say,
  });
  supervisor.start(
    meshChildren({
      ports: defaultPorts,
      host: config.host,
      workers: config.workers,
      gpuPerWorker: config.gpuPerWorker,
      workerArgs: config.modelPath ? ["--model-path", config.modelPath] : [],
      security: config.insecure ? "insecure" : { pkiDir },
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

  const baseUrl = `http://${config.host}:${defaultPorts.gatewayHttp}`;
  const ready = await waitUntilReady({
    baseUrl,
    signal: lifetime.signal,
    onStillWaiting: () => say("still waiting for a worker to load its model…"),
  });
  if (ready) {
    say(`ready: OpenAI API at ${baseUrl}/v1, gRPC API at ${config.host}:${defaultPorts.gatewayGrpc}; ${await describeModels(baseUrl)}`);
  }
} catch (error) {
  exitOnStartupFailure(undefined, error);
}
