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
import { loadGatewayConfig } from "./config.js";
import { createChatService } from "./grpc/chat-service.js";
import { createCompletionService } from "./grpc/completion-service.js";
import { createEmbeddingService } from "./grpc/embedding-service.js";
import { createModelService } from "./grpc/model-service.js";
import { buildHttpServer } from "./http/server.js";
import { MeshClients } from "./mesh/clients.js";
import { ModelCatalog } from "./mesh/models.js";

let logger: Logger | undefined;
try {
  const config = loadGatewayConfig({ argv: process.argv.slice(2), env: process.env });
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
  const access = new AccessControl(
    {
      auth: config.auth,
      keys: new ApiKeys(config.apiKeys),
      profiles: config.profiles,
      aliases: config.aliases,
      defaultProfile: config.defaultProfile,
    },
    catalog,
  );
  // The shared mode: stored Responses and the response cache live in Redis, so any gateway replica answers them.
  const redis =
    config.redisUrl === ""
      ? undefined
      : new SharedRedis(config.redisUrl, logger, registry, {
          what: "stored responses and the response cache",
          fallback: "this gateway stores and answers them from its own memory",
        });
  const localCache = config.responseCache
    ? new ResponseCache(config.responseCacheMaxBytes, config.responseCacheTtlMs, registry)
    : undefined;
  const cache =
    localCache && redis ? new SharedResponseCache(redis, localCache, config.responseCacheMaxBytes, config.responseCacheTtlMs) : localCache;
  // Which models each profile prefers, joined to the request series by model.
  const profileModels = new Gauge({
    name: "infermesh_gateway_profile_model_info",
    help: "The models of each serving profile, by preference (rank 0 first); always 1",
    labelNames: ["profile", "model_id", "rank"],
    registers: [registry],
  });
  for (const [profile, { models }] of Object.entries(config.profiles)) {
    for (const [rank, model] of models.entries()) profileModels.set({ profile, model_id: model, rank: String(rank) }, 1);
  }
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
    cache,
    responses,
    events: decisionEvents(logger, config.eventLog),
    corsOrigins: config.corsOrigins,
    registry,
    logger,
    bodyLimitBytes: config.bodyLimitBytes,
    ready: async () => (await catalog.list()).length > 0,
    debug: { service: "gateway", config, registry },
  });
  const address = await http.listen({ host: config.host, port: config.port });
  logger.info(
    { url: address, grpcPort: grpc.port, auth: config.auth, apiKeys: config.apiKeys.length },
    `infermesh gateway ready at ${address}`,
  );
  const log = logger;
  exitOnSignals(log, async () => {
    grpc.setServing(false);
    await Promise.all([http.close(), grpc.close(config.shutdownGraceMs)]);
    clients.close();
    await redis?.close();
  });
} catch (error) {
  exitOnStartupFailure(logger, error);
}
