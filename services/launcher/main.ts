import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { defaultTrustDomain } from "../common/mesh-security/identity.js";
import { ensureLocalPki } from "../common/mesh-security/local-pki.js";
import { exitOnStartupFailure } from "../common/lifecycle.js";
import { loadLauncherConfig } from "./config.js";
import { lineFormatter } from "./log-format.js";
import { defaultPorts, meshChildren, telemetryImport } from "./mesh.js";
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

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    say(`${signal}: stopping all services`);
    supervisor.stop().then(() => {
      say("stopped");
      process.exit(0);
    });
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));

  const url = `http://${config.host}:${defaultPorts.gatewayHttp}`;
  for (let attempt = 0; !stopping; attempt += 1) {
    const ready = await fetch(`${url}/readyz`).then(
      (response) => response.ok,
      () => false,
    );
    if (ready) {
      const models = (await fetch(`${url}/v1/models`).then((response) => response.json())) as { data: { id: string }[] };
      say(
        `ready: OpenAI API at ${url}/v1, gRPC API at ${config.host}:${defaultPorts.gatewayGrpc}; models: ${models.data.map((model) => model.id).join(", ")}`,
      );
      break;
    }
    if (attempt > 0 && attempt % 40 === 0) say("still waiting for a worker to load its model…");
    await sleep(250);
  }
} catch (error) {
  exitOnStartupFailure(undefined, error);
}
