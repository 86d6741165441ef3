import { AdmissionServiceDefinition } from "../../gen/infermesh/admission/v1/admission_service.js";
import { systemClock } from "../common/clock.js";
import { startGrpcServer } from "../common/grpc-server.js";
import { exitOnSignals, exitOnStartupFailure } from "../common/lifecycle.js";
import { createLogger, type Logger } from "../common/logger.js";
import { createMetricsRegistry, startMetricsServer } from "../common/metrics.js";
import { createAdmissionService } from "./admission-service.js";
import { TenantLimiter } from "./tenant-limits.js";
import { ConcurrencyLimiter } from "./concurrency-limiter.js";
import { loadAdmissionConfig } from "./config.js";

let logger: Logger | undefined;
try {
  const config = loadAdmissionConfig({ argv: process.argv.slice(2), env: process.env });
  logger = createLogger("admission", config.logLevel);
  const registry = createMetricsRegistry("admission");
  const limiter = new ConcurrencyLimiter(config.maxConcurrency, config.maxQueue, systemClock);
  const grpc = await startGrpcServer({
    address: config.listen,
    serviceNames: [AdmissionServiceDefinition.fullName],
    logger,
    addServices: (server) =>
      server.add(
        AdmissionServiceDefinition,
        createAdmissionService({ limiter, tenants: new TenantLimiter(systemClock), defaultQueueTimeoutMs: config.queueTimeoutMs, registry, logger: logger! }),
      ),
  });
  const metrics = await startMetricsServer(config.metricsHost, config.metricsPort, registry);
  logger.info({ maxConcurrency: config.maxConcurrency, metricsPort: metrics.port }, "admission ready");
  exitOnSignals(logger, async () => {
    grpc.setServing(false);
    limiter.close();
    await grpc.close(config.shutdownGraceMs);
    metrics.server.close();
  });
} catch (error) {
  exitOnStartupFailure(logger, error);
}
