import { MemoryGuardServiceDefinition } from "../../gen/infermesh/memory/v1/memory_service.js";
import { RouterServiceDefinition } from "../../gen/infermesh/router/v1/router_service.js";
import { systemClock } from "../common/clock.js";
import { discoveredReplicas } from "../common/replica-discovery.js";
import { startGrpcServer } from "../common/grpc-server.js";
import { exitOnSignals, exitOnStartupFailure } from "../common/lifecycle.js";
import { createLogger, type Logger } from "../common/logger.js";
import { createMetricsRegistry, startMetricsServer } from "../common/metrics.js";
import { MeshSecurity } from "../common/mesh-security/mesh-security.js";
import { routerPolicy } from "../common/mesh-security/rules.js";
import { loadRouterConfig, type RouterConfig, routerReloadable, schedulerConfig } from "./config.js";
import { configFileOf } from "../common/config.js";
import { LiveConfig } from "../common/live-config.js";
import { Fleet } from "./fleet.js";
import { Scheduler } from "./scheduling/scheduler.js";
import { PrefixTable } from "./prefix-table.js";
import { SessionTable } from "./session-table.js";
import { SharedRedis } from "../common/redis.js";
import { SharedSplits } from "./shared-splits.js";
import { TrafficSplits } from "./traffic-split.js";
import { watchPressure } from "./pressure-watch.js";
import { createRouterService } from "./router-service.js";
import { decisionEvents } from "../common/decision-events.js";
import { RolloutController } from "./rollouts/controller.js";
import { OutcomeWindows } from "./rollouts/outcome-window.js";
import { SharedRolloutStore } from "./rollouts/shared-store.js";
import { LocalRolloutStore } from "./rollouts/store.js";

let logger: Logger | undefined;
try {
  const sources = { argv: process.argv.slice(2), env: process.env };
  const config = loadRouterConfig(sources);
  logger = createLogger("router", config.logLevel);
  const registry = createMetricsRegistry("router");
  const security = MeshSecurity.load("router", config, logger);
  const fleet = new Fleet(systemClock, {
    staleAfterMs: config.reportIntervalMs * config.staleAfterReports,
    freshReportMs: config.reportIntervalMs * 2,
    pickExpireMs: config.pickExpireMs,
  });
  const prefixes = new PrefixTable(config.prefixBlocksPerWorker);
  const scheduler = new Scheduler(fleet, prefixes, new SessionTable(config.sessionCapacity), schedulerConfig(config));
  const lifetime = new AbortController();
  const log = logger;
  // How picks are made changes on SIGHUP or a change of the config file, without a restart.
  const live = new LiveConfig<RouterConfig>({
    service: "router",
    initial: config,
    load: () => loadRouterConfig(sources),
    reloadable: routerReloadable,
    apply: (next) => {
      scheduler.reconfigure(schedulerConfig(next));
      log.level = next.logLevel;
    },
    file: configFileOf(sources, "INFERMESH_ROUTER_"),
    logger,
    registry,
  });
  live.watch();
  const splits = new TrafficSplits();
  // The shared mode: traffic splits live in Redis, the same on every replica and after a restart.
  const redis =
    config.redisUrl === ""
      ? undefined
      : new SharedRedis(config.redisUrl, logger, registry, {
          what: "traffic splits and canary rollouts",
          fallback: "the traffic splits in force stay, a split set now is not saved, and every replica only rolls back a broken canary",
        });
  const sharedSplits = redis && new SharedSplits(redis, splits, logger);
  sharedSplits?.start();
  const events = decisionEvents(logger, config.eventLog);
  const outcomes = new OutcomeWindows();
  const rollouts = new RolloutController({
    store: redis ? new SharedRolloutStore(redis, logger) : new LocalRolloutStore(config.rolloutStateFile || undefined),
    windows: outcomes,
    applySplit: async (split) => {
      const problem = splits.set(split);
      if (problem) logger?.error({ model: split.model, problem }, "a rollout's split was refused");
      else await sharedSplits?.save(split);
    },
    registry,
    logger,
    events,
    tickMs: config.rolloutTickMs,
    warmupMs: config.reportIntervalMs * config.staleAfterReports,
  });
  await rollouts.start();
  const service = createRouterService({
    fleet,
    scheduler,
    prefixes,
    splits,
    saveSplit: sharedSplits && ((split) => sharedSplits.save(split)),
    rollouts,
    outcomes,
    reportIntervalMs: config.reportIntervalMs,
    registry,
    logger,
    events,
    lifetime: lifetime.signal,
  });
  const grpc = await startGrpcServer({
    address: config.listen,
    credentials: security.serverCredentials(routerPolicy(), registry, logger),
    serviceNames: [RouterServiceDefinition.fullName],
    logger,
    debug: { service: "router", config: live, registry },
    addServices: (server) => server.add(RouterServiceDefinition, service),
  });
  const metrics = await startMetricsServer(config.metricsHost, config.metricsPort, registry, () => grpc.serving);
  if (config.memoryGuardAddress.length > 0) {
    // Every memory-guard replica the setting names (dns:/// entries found and re-resolved).
    const memoryGuard = discoveredReplicas(config.memoryGuardAddress, "memory-guard", MemoryGuardServiceDefinition, security, {
      signal: lifetime.signal,
      logger,
      timeoutMs: 2_000,
    });

    void watchPressure(memoryGuard, fleet, logger, lifetime.signal);
  }
  logger.info({ metricsPort: metrics.port }, "router ready");
  exitOnSignals(logger, async () => {
    live.close();
    grpc.setServing(false);
    lifetime.abort();
    await grpc.close(config.shutdownGraceMs);
    await rollouts.close();
    sharedSplits?.close();
    await redis?.close();
    metrics.server.close();
  });
} catch (error) {
  exitOnStartupFailure(logger, error);
}
