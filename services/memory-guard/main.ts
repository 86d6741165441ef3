import { MemoryGuardServiceDefinition } from "../../gen/infermesh/memory/v1/memory_service.js";
import { startGrpcServer } from "../common/grpc-server.js";
import { exitOnSignals, exitOnStartupFailure } from "../common/lifecycle.js";
import { createLogger, type Logger } from "../common/logger.js";
import { createMetricsRegistry, startMetricsServer } from "../common/metrics.js";
import { MeshSecurity } from "../common/mesh-security/mesh-security.js";
import { memoryGuardPolicy } from "../common/mesh-security/rules.js";
import { loadMemoryGuardConfig, memoryGuardReloadable } from "./config.js";
import { configFileOf } from "../common/config.js";
import { LiveConfig } from "../common/live-config.js";
import { KvLedger } from "./kv-ledger.js";
import { createMemoryGuardService } from "./memory-guard-service.js";
import { decisionEvents } from "../common/decision-events.js";

let logger: Logger | undefined;
try {
  const sources = { argv: process.argv.slice(2), env: process.env };
  const config = loadMemoryGuardConfig(sources);
  logger = createLogger("memory-guard", config.logLevel);
  const registry = createMetricsRegistry("memory-guard");
  const security = MeshSecurity.load("memory-guard", config, logger);
  const ledger = new KvLedger({ warnRatio: config.warnRatio, criticalRatio: config.criticalRatio });
  const lifetime = new AbortController();
  const log = logger;
  // Pressure levels change on SIGHUP or a change of the config file, without a restart.
  const live = new LiveConfig({
    service: "memory-guard",
    initial: config,
    load: () => loadMemoryGuardConfig(sources),
    reloadable: memoryGuardReloadable,
    apply: (next) => {
      ledger.setThresholds({ warnRatio: next.warnRatio, criticalRatio: next.criticalRatio });
      log.level = next.logLevel;
    },
    file: configFileOf(sources, "INFERMESH_MEMORY_GUARD_"),
    logger,
    registry,
  });
  live.watch();
  const service = createMemoryGuardService({
    ledger,
    registry,
    logger,
    events: decisionEvents(logger, config.eventLog),
    lifetime: lifetime.signal,
  });
  const grpc = await startGrpcServer({
    address: config.listen,
    credentials: security.serverCredentials(memoryGuardPolicy(), registry, logger),
    serviceNames: [MemoryGuardServiceDefinition.fullName],
    logger,
    debug: { service: "memory-guard", config: live, registry },
    addServices: (server) => server.add(MemoryGuardServiceDefinition, service),
  });
  const metrics = await startMetricsServer(config.metricsHost, config.metricsPort, registry, () => grpc.serving);
  logger.info({ metricsPort: metrics.port }, "memory-guard ready");
  exitOnSignals(logger, async () => {
    live.close();
    grpc.setServing(false);
    lifetime.abort();
    await grpc.close(config.shutdownGraceMs);
    metrics.server.close();
  });
} catch (error) {
  exitOnStartupFailure(logger, error);
}
