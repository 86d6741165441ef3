import { MemoryGuardServiceDefinition } from "../../gen/infermesh/memory/v1/memory_service.js";
import { startGrpcServer } from "../common/grpc-server.js";
import { exitOnSignals, exitOnStartupFailure } from "../common/lifecycle.js";
import { createLogger, type Logger } from "../common/logger.js";
import { createMetricsRegistry, startMetricsServer } from "../common/metrics.js";
import { MeshSecurity } from "../common/mesh-security/mesh-security.js";
import { memoryGuardPolicy } from "../common/mesh-security/rules.js";
import { loadMemoryGuardConfig } from "./config.js";
import { KvLedger } from "./kv-ledger.js";
import { createMemoryGuardService } from "./memory-guard-service.js";
import { decisionEvents } from "../common/decision-events.js";

let logger: Logger | undefined;
try {
  const config = loadMemoryGuardConfig({ argv: process.argv.slice(2), env: process.env });
  logger = createLogger("memory-guard", config.logLevel);
  const registry = createMetricsRegistry("memory-guard");
  const security = MeshSecurity.load("memory-guard", config, logger);
  const ledger = new KvLedger({ warnRatio: config.warnRatio, criticalRatio: config.criticalRatio });
  const lifetime = new AbortController();
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
    debug: { service: "memory-guard", config, registry },
    addServices: (server) => server.add(MemoryGuardServiceDefinition, service),
  });
  const metrics = await startMetricsServer(config.metricsHost, config.metricsPort, registry, () => grpc.serving);
  logger.info({ metricsPort: metrics.port }, "memory-guard ready");
  exitOnSignals(logger, async () => {
    grpc.setServing(false);
    lifetime.abort();
    await grpc.close(config.shutdownGraceMs);
    metrics.server.close();
  });
} catch (error) {
  exitOnStartupFailure(logger, error);
}
