import { ChatServiceDefinition } from "../gen/infermesh/gateway/v1/chat_service.js";
import { CompletionServiceDefinition } from "../gen/infermesh/gateway/v1/completion_service.js";
import { EmbeddingServiceDefinition } from "../gen/infermesh/gateway/v1/embedding_service.js";
import { ModelServiceDefinition } from "../gen/infermesh/gateway/v1/model_service.js";
import { ServerCredentials } from "@grpc/grpc-js";
import { Gauge } from "prom-client";
import { startGrpcServer } from "../services/common/grpc-server.js";
import { MeshSecurity } from "../services/common/mesh-security/mesh-security.js";
import { exitOnSignals, exitOnStartupFailure } from "../services/common/lifecycle.js";
import { createLogger, type Logger } from "../services/common/logger.js";
import { decisionEvents } from "../services/common/decision-events.js";
import { createMetricsRegistry } from "../services/common/metrics.js";
import { AccessControl } from "./access/access-control.js";
import { ApiKeys } from "./access/api-keys.js";
import type { FlowDeps } from "./flow/deps.js";
import { RequestMetrics } from "./observability/request-metrics.js";
import { RequestObserver } from "./observability/request-observation.js";
import { SharedGenerations } from "./flow/shared-generations.js";
import { ResponseCache } from "./response-cache/response-cache.js";
import { ResponsesStore } from "./responses-store/responses-store.js";
import { SharedResponsesStore } from "./responses-store/shared-responses-store.js";
import { SharedResponseCache } from "./response-cache/shared-response-cache.js";
import { SharedRedis } from "../services/common/redis.js";
import { type GatewayConfig, gatewayReloadable, loadGatewayConfig } from "./config.js";
import { configFileOf } from "../services/common/config.js";
import { LiveConfig } from "../services/common/live-config.js";
import type { ResponseCaching } from "./response-cache/response-cache.js";
import { createChatService } from "./grpc/chat-service.js";
import { createCompletionService } from "./grpc/completion-service.js";
import { createEmbeddingService } from "./grpc/embedding-service.js";
import { createModelService } from "./grpc/model-service.js";
import { buildHttpServer } from "./http/server.js";
import { MeshClients } from "./mesh/clients.js";
import { ModelCatalog } from "./mesh/models.js";

let logger: Logger | undefined;
try {
  const sources = { argv: process.argv.slice(2), env: process.env };
  const config = loadGatewayConfig(sources);
  logger = createLogger("gateway", config.logLevel);
  const registry = createMetricsRegistry("gateway");
  const security = MeshSecurity.load("gateway", config, logger);
  const clients = new MeshClients(
    security,
    { admission: config.admissionAddress, router: config.routerAddress, memoryGuard: config.memoryGuardAddress },
    config.unaryTimeoutMs,
    logger,
  );
  const catalog = new ModelCatalog(clients, config.modelCacheMs);
  const flow: FlowDeps = {
    clients,
    catalog,
    observer: new RequestObserver(new RequestMetrics(registry), decisionEvents(logger, config.accessLog)),
    requestTimeoutMs: config.requestTimeoutMs,
    shared: config.dedupeRequests ? new SharedGenerations(registry) : undefined,
  };
  const accessOf = (settings: GatewayConfig) => ({
    auth: settings.auth,
    keys: new ApiKeys(settings.apiKeys),
    profiles: settings.profiles,
    aliases: settings.aliases,
    defaultProfile: settings.defaultProfile,
  });
  const access = new AccessControl(accessOf(config), catalog);
  // The shared mode: stored Responses and the response cache live in Redis, so any gateway replica answers them.
  const redis =
    config.redisUrl === ""
      ? undefined
      : new SharedRedis(config.redisUrl, logger, registry, {
          what: "stored responses and the response cache",
          fallback: "this gateway stores and answers them from its own memory",
        });
  // The cache is made the first time it is turned on, and kept (with its metrics) when a reload turns it off.
  let localCache: ResponseCache | undefined;
  let sharedCache: SharedResponseCache | undefined;
  let cacheInForce: ResponseCaching | undefined;
  const configureCache = (settings: GatewayConfig) => {
    const { responseCacheMaxBytes: maxBytes, responseCacheTtlMs: ttlMs } = settings;
    if (!settings.responseCache) cacheInForce = undefined;
    else if (localCache) {
      (sharedCache ?? localCache).resize(maxBytes, ttlMs);
      cacheInForce = sharedCache ?? localCache;
    } else {
      localCache = new ResponseCache(maxBytes, ttlMs, registry);
      sharedCache = redis && new SharedResponseCache(redis, localCache, maxBytes, ttlMs);
      cacheInForce = sharedCache ?? localCache;
    }
  };
  configureCache(config);
  // Which models each profile prefers, joined to the request series by model.
  const profileModels = new Gauge({
    name: "infermesh_gateway_profile_model_info",
    help: "The models of each serving profile, by preference (rank 0 first); always 1",
    labelNames: ["profile", "model_id", "rank"],
    registers: [registry],
  });
  const showProfiles = (profiles: GatewayConfig["profiles"]) => {
    profileModels.reset();
    for (const [profile, { models }] of Object.entries(profiles)) {
      for (const [rank, model] of models.entries()) profileModels.set({ profile, model_id: model, rank: String(rank) }, 1);
    }
  };
  showProfiles(config.profiles);
  const log = logger;
  // Keys, tenants, profiles, aliases and the cache change on SIGHUP or a change of the file, without a restart.
  const live = new LiveConfig<GatewayConfig>({
    service: "gateway",
    initial: config,
    load: () => loadGatewayConfig(sources),
    reloadable: gatewayReloadable,
    apply: (next, changed) => {
      access.reconfigure(accessOf(next));
      showProfiles(next.profiles);
      if (changed.some((key) => key.startsWith("responseCache"))) configureCache(next);
      log.level = next.logLevel;
    },
    file: configFileOf(sources, "INFERMESH_GATEWAY_"),
    logger,
    registry,
  });
  live.watch();
  const responsesSettings = {
    maxBytes: config.responsesMaxBytes,
    tenantMaxBytes: config.responsesTenantMaxBytes,
    ttlMs: config.responsesTtlMs,
  };
  const localResponses = new ResponsesStore(responsesSettings, registry);
  const responses = redis ? new SharedResponsesStore(redis, localResponses, responsesSettings, localResponses.evictions) : localResponses;
  const grpc = await startGrpcServer({
    address: config.grpcListen,
    // The public API: users authenticate with API keys, as over HTTP; TLS to clients is
    // the ingress's, as for the HTTP API.
    credentials: ServerCredentials.createInsecure(),
    serviceNames: [
      ChatServiceDefinition.fullName,
      CompletionServiceDefinition.fullName,
      EmbeddingServiceDefinition.fullName,
      ModelServiceDefinition.fullName,
    ],
    logger,
    addServices: (server) => {
      server.add(ChatServiceDefinition, createChatService(flow, access));
      server.add(CompletionServiceDefinition, createCompletionService(flow, access));
      server.add(EmbeddingServiceDefinition, createEmbeddingService(flow, access));
      server.add(ModelServiceDefinition, createModelService(catalog, access));
    },
  });
  const http = buildHttpServer({
    flow,
    access,
    cache: () => cacheInForce,
    responses,
    events: decisionEvents(logger, config.eventLog),
    corsOrigins: config.corsOrigins,
    registry,
    logger,
    bodyLimitBytes: config.bodyLimitBytes,
    ready: async () => (await catalog.list()).length > 0,
    debug: { service: "gateway", config: live, registry },
  });
  const address = await http.listen({ host: config.host, port: config.port });
  logger.info(
    { url: address, grpcPort: grpc.port, auth: config.auth, apiKeys: config.apiKeys.length },
    `infermesh gateway ready at ${address}`,
  );
  exitOnSignals(log, async () => {
    live.close();
    grpc.setServing(false);
    await Promise.all([http.close(), grpc.close(config.shutdownGraceMs)]);
    clients.close();
    await redis?.close();
  });
} catch (error) {
  exitOnStartupFailure(logger, error);
}
