import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ServingState } from "../../gen/infermesh/common/v1/common.js";
import { MemoryGuardServiceDefinition } from "../../gen/infermesh/memory/v1/memory_service.js";
import { RouterServiceDefinition } from "../../gen/infermesh/router/v1/router_service.js";
import { WorkerServiceDefinition } from "../../gen/infermesh/worker/v1/worker_service.js";
import { createGrpcClient } from "../common/grpc-client.js";
import { startGrpcServer } from "../common/grpc-server.js";
import { exitOnSignals, exitOnStartupFailure } from "../common/lifecycle.js";
import { configFileOf } from "../common/config.js";
import { LiveConfig } from "../common/live-config.js";
import { createLogger, type Logger } from "../common/logger.js";
import { createMetricsRegistry, startMetricsServer } from "../common/metrics.js";
import { repoRoot } from "../common/paths.js";
import { MeshSecurity } from "../common/mesh-security/mesh-security.js";
import { workerPolicy } from "../common/mesh-security/rules.js";
import { loadWorkerConfig } from "./config.js";
import { loadEngine } from "./engine-loader.js";
import { Arrivals } from "./arrivals.js";
import { FailureWindow } from "./failure-window.js";
import { OutcomeLog } from "./outcome-log.js";
import { KvReservations } from "./kv-reservations.js";
import { keepReportingKv, PrimaryLink } from "./kv-reporter.js";
import { forEachReplica } from "../common/replica-discovery.js";
import { keepRegistered } from "./membership.js";
import { EngineHost } from "./engine-host.js";
import { exportEngineMetrics } from "./engine-metrics.js";
import { createWorkerService } from "./worker-service.js";

let logger: Logger | undefined;
try {
  const sources = { argv: process.argv.slice(2), env: process.env };
  const config = loadWorkerConfig(sources);
  const workerId = config.workerId || `worker-${config.listen.split(":").pop()}`;
  logger = createLogger("worker", config.logLevel).child({ worker_id: workerId });
  const log = logger;
  const registry = createMetricsRegistry("worker");
  // Only the log level changes live: the engine, the model and the device take a
  // restart (drain, restart; the router keeps the fleet serving), and a reload says so.
  const live = new LiveConfig({
    service: "worker",
    initial: config,
    load: () => loadWorkerConfig(sources),
    reloadable: ["logLevel"],
    apply: (next) => {
      log.level = next.logLevel;
    },
    file: configFileOf(sources, "INFERMESH_WORKER_"),
    logger: log,
    registry,
  });
  live.watch();
  const security = MeshSecurity.load("worker", config, log);
  const lifetime = new AbortController();
  const runtime = new EngineHost({
    // Only llama.cpp loads GGUFs; sim and openai serve what they were started with.
    loader: config.engine === "llamacpp" ? (modelPath, modelId) => loadEngine({ ...config, modelPath, modelId }, log) : undefined,
    modelDir: resolve(config.modelDir),
    drainGraceMs: config.shutdownGraceMs,
  });
  const reservations = new KvReservations();
  const failures = new FailureWindow();
  const arrivals = new Arrivals();
  const outcomes = new OutcomeLog();
  const grpc = await startGrpcServer({
    address: config.listen,
    credentials: security.serverCredentials(workerPolicy(), registry, log),
    serviceNames: [WorkerServiceDefinition.fullName],
    logger: log,
    debug: {
      service: "worker",
      config: live,
      registry,
      details: () => ({
        workerId,
        state: runtime.state,
        engine: runtime.engine?.kind ?? "",
        device: runtime.engine?.device ?? "",
        models: runtime.engine?.models() ?? [],
        nodeLlamaCpp: nodeLlamaCppVersion(),
      }),
    },
    addServices: (server) =>
      server.add(
        WorkerServiceDefinition,
        createWorkerService({ workerId, runtime, reservations, failures, outcomes, arrivals, registry, logger: log }),
      ),
  });
  // Health says NOT_SERVING until a model has loaded, and follows the serving state
  // through whatever an admin loads or unloads.
  let serving = false;
  grpc.setServing(false);
  runtime.onLoadChange(() => {
    if (serving === (runtime.state === ServingState.SERVING_STATE_SERVING)) return;
    serving = !serving;
    grpc.setServing(serving);
  });
  const metrics = await startMetricsServer(config.metricsHost, config.metricsPort, registry, () => grpc.serving);
  const address = config.advertiseAddress || config.listen.replace(/^0\.0\.0\.0:/, "127.0.0.1:").replace(/:0$/, `:${grpc.port}`);

  exitOnSignals(log, async () => {
    live.close();
    // Leave the fleet first (closing Connect drops us from the router at once), then
    // let running generations finish.
    runtime.state = ServingState.SERVING_STATE_DRAINING;
    grpc.setServing(false);
    lifetime.abort();
    await grpc.close(config.shutdownGraceMs);
    await runtime.engine?.close();
    metrics.server.close();
  });

  try {
    runtime.serve(await loadEngine(config, log));
  } catch (error) {
    runtime.fail(error instanceof Error ? error.message : String(error));
    log.error({ err: error }, `the model failed to load; this worker stays NOT_SERVING: ${runtime.stateReason}`);
  }
  const engine = runtime.engine;
  if (engine) {
    exportEngineMetrics(registry, () => runtime.engine, workerId);
    log.info(
      { address, device: engine.device, models: engine.models().map((model) => model.id), metricsPort: metrics.port },
      "worker ready",
    );
    // One Connect stream per router replica, each with its own state: every replica sees
    // the whole fleet. dns:/// entries (a headless Service) are re-resolved as replicas come and go.
    forEachReplica(
      config.routerAddress,
      (routerAddress, signal) => {
        const channel = security.channel(routerAddress, "router");
        const reader = arrivals.reader();
        const outcomeReader = outcomes.reader();
        void keepRegistered({
          client: createGrpcClient(RouterServiceDefinition, channel, 2_000),
          workerId,
          address,
          runtime,
          onDrain: (reason) => {
            log.info({ reason, router: routerAddress }, "draining at the router's request");
            runtime.state = ServingState.SERVING_STATE_DRAINING;
            grpc.setServing(false);
          },
          logger: log.child({ router: routerAddress }),
          signal,
          minReportIntervalMs: config.reportMinIntervalMs,
          tensorParallelSize: config.tensorParallelSize,
          failureRatio: () => failures.ratio(),
          arrivals: reader,
          outcomes: outcomeReader,
        }).finally(() => {
          channel.close();
          arrivals.release(reader);
          outcomes.release(outcomeReader);
        });
      },
      { signal: lifetime.signal, logger: log.child({ peer: "router" }) },
    );
    // One Report stream per memory-guard replica, so each sees every worker; eviction
    // commands are carried out from one of them only (the first whose stream is up),
    // since every replica decides the same evictions from the same reports.
    const links = new PrimaryLink();
    forEachReplica(
      config.memoryGuardAddress,
      (memoryGuardAddress, signal) => {
        const channel = security.channel(memoryGuardAddress, "memory-guard");
        void keepReportingKv({
          client: createGrpcClient(MemoryGuardServiceDefinition, channel, 2_000),
          workerId,
          runtime,
          reservations,
          logger: log.child({ memory_guard: memoryGuardAddress }),
          signal,
          minIntervalMs: config.reportMinIntervalMs,
          link: links.member(memoryGuardAddress),
        }).finally(() => channel.close());
      },
      { signal: lifetime.signal, logger: log.child({ peer: "memory-guard" }) },
    );
  }
} catch (error) {
  exitOnStartupFailure(logger, error);
}

/** node-llama-cpp's version (its llama.cpp build is the one it ships), for bug reports. */
function nodeLlamaCppVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(repoRoot(), "node_modules/node-llama-cpp/package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "";
  }
}
