import { AdmissionServiceDefinition } from "../../gen/infermesh/admission/v1/admission_service.js";
import { MemoryGuardServiceDefinition } from "../../gen/infermesh/memory/v1/memory_service.js";
import { systemClock } from "../common/clock.js";
import { discoveredReplicas } from "../common/replica-discovery.js";
import { startGrpcServer } from "../common/grpc-server.js";
import { exitOnSignals, exitOnStartupFailure } from "../common/lifecycle.js";
import { createLogger, type Logger } from "../common/logger.js";
import { createMetricsRegistry, startMetricsServer } from "../common/metrics.js";
import { MeshSecurity } from "../common/mesh-security/mesh-security.js";
import { admissionPolicy } from "../common/mesh-security/rules.js";
import { createAdmissionService } from "./admission-service.js";
import { decisionEvents } from "../common/decision-events.js";
import { AdmissionStats } from "./admission-stats.js";
import { type AdmissionConfig, admissionReloadable, loadAdmissionConfig, schedulerSettings } from "./config.js";
import { configFileOf } from "../common/config.js";
import { LiveConfig } from "../common/live-config.js";
import { MemoryGate } from "./memory-gate.js";
import { watchMemory } from "./memory-watch.js";
import { Scheduler } from "./scheduler.js";
import { TenantLimiter } from "./tenant-limits.js";
import { startSharedAdmission } from "./shared/shared-admission.js";

let logger: Logger | undefined;
try {
  const sources = { argv: process.argv.slice(2), env: process.env };
  const config = loadAdmissionConfig(sources);
  logger = createLogger("admission", config.logLevel);
  const registry = createMetricsRegistry("admission");
  const security = MeshSecurity.load("admission", config, logger);
  const memory = new MemoryGate(systemClock, { staleMs: config.pressureStaleMs, batchHeadroomRatio: config.batchHeadroomRatio }, logger);
  const scheduler = new Scheduler({
    ...schedulerSettings(config),
    clock: systemClock,
    memory,
    onShort: () => shared?.lease.refreshSoon(),
  });
  // The shared mode: tenant limits and the fleet's cap held across replicas in Redis.
  const shared =
    config.redisUrl === "" ? undefined : startSharedAdmission({ ...config, capacity: config.maxConcurrency }, scheduler, logger, registry);
  const lifetime = new AbortController();
  const log = logger;
  // Limits and classes change on SIGHUP or a change of the config file, without a restart.
  const live = new LiveConfig<AdmissionConfig>({
    service: "admission",
    initial: config,
    load: () => loadAdmissionConfig(sources),
    reloadable: admissionReloadable(shared !== undefined),
    apply: (next) => {
      scheduler.reconfigure(schedulerSettings(next), shared !== undefined);
      memory.reconfigure({ staleMs: next.pressureStaleMs, batchHeadroomRatio: next.batchHeadroomRatio });
      log.level = next.logLevel;
    },
    file: configFileOf(sources, "INFERMESH_ADMISSION_"),
    logger,
    registry,
  });
  live.watch();
  const service = createAdmissionService({
    scheduler,
    tenants: shared?.tenants ?? new TenantLimiter(systemClock),
    stats: new AdmissionStats(scheduler, memory, registry),
    defaultQueueTimeoutMs: () => live.current.queueTimeoutMs,
    logger,
    events: decisionEvents(logger, config.eventLog),
  });
  const grpc = await startGrpcServer({
    address: config.listen,
    credentials: security.serverCredentials(admissionPolicy(), registry, logger),
    serviceNames: [AdmissionServiceDefinition.fullName],
    logger,
    debug: { service: "admission", config: live, registry },
    addServices: (server) => server.add(AdmissionServiceDefinition, service),
  });
  const metrics = await startMetricsServer(config.metricsHost, config.metricsPort, registry, () => grpc.serving);
  if (config.memoryGuardAddress.length > 0) {
    // Every memory-guard replica the setting names (dns:/// entries found and re-resolved).
    const memoryGuard = discoveredReplicas(config.memoryGuardAddress, "memory-guard", MemoryGuardServiceDefinition, security, {
      signal: lifetime.signal,
      logger,
      timeoutMs: 2_000,
    });

    void watchMemory(memoryGuard, memory, logger, lifetime.signal);
  }
  logger.info(
    {
      maxConcurrency: config.maxConcurrency,
      shared: shared !== undefined,
      memoryGuard: config.memoryGuardAddress.join(",") || "none",
      metricsPort: metrics.port,
    },
    "admission ready",
  );
  exitOnSignals(logger, async () => {
    live.close();
    grpc.setServing(false);
    lifetime.abort();
    scheduler.close();
    await grpc.close(config.shutdownGraceMs);
    await shared?.close();
    metrics.server.close();
  });
} catch (error) {
  exitOnStartupFailure(logger, error);
}
