import { AdmissionServiceDefinition } from "../../gen/infermesh/admission/v1/admission_service.js";
import { systemClock } from "../common/clock.js";
import { startGrpcServer } from "../common/grpc-server.js";
import { exitOnSignals, exitOnStartupFailure } from "../common/lifecycle.js";
import { createLogger, type Logger } from "../common/logger.js";
import { createMetricsRegistry, startMetricsServer } from "../common/metrics.js";
import { createAdmissionService } from "./admission-service.js";
import { AdmissionStats } from "./admission-stats.js";
import { loadAdmissionConfig, maxQueuePerClass } from "./config.js";
import { Scheduler } from "./scheduler.js";
import { TenantLimiter } from "./tenant-limits.js";

let logger: Logger | undefined;
try {
  const config = loadAdmissionConfig({ argv: process.argv.slice(2), env: process.env });
  logger = createLogger("admission", config.logLevel);
  const registry = createMetricsRegistry("admission");
  const scheduler = new Scheduler({
    capacity: config.maxConcurrency,
    maxQueue: config.maxQueue,
    maxQueuePerClass: maxQueuePerClass(config),
    queuedUpdateMs: config.queuedUpdateMs,
    clock: systemClock,
  });
  const service = createAdmissionService({
    scheduler,
    tenants: new TenantLimiter(systemClock),
    stats: new AdmissionStats(scheduler, registry),
    defaultQueueTimeoutMs: config.queueTimeoutMs,
    logger,
  });
  const grpc = await startGrpcServer({
    address: config.listen,
    serviceNames: [AdmissionServiceDefinition.fullName],
    logger,
    addServices: (server) => server.add(AdmissionServiceDefinition, service),
  });
  const metrics = await startMetricsServer(config.metricsHost, config.metricsPort, registry);
  logger.info({ maxConcurrency: config.maxConcurrency, metricsPort: metrics.port }, "admission ready");
  exitOnSignals(logger, async () => {
    grpc.setServing(false);
    scheduler.close();
    await grpc.close(config.shutdownGraceMs);
    metrics.server.close();
  });
} catch (error) {
  exitOnStartupFailure(logger, error);
}
