import { randomUUID } from "node:crypto";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from "fastify";
import { Status } from "nice-grpc";
import type { Registry } from "prom-client";
import type { ChatFlowDeps } from "../chat-flow.js";
import { ApiError, toApiError } from "../errors.js";
import type { Logger } from "../../services/common/logger.js";
import { registerChatCompletions } from "./chat-completions/route.js";
import { sendError } from "./errors.js";
import { registerModels } from "./models/route.js";

export interface HttpServerDeps {
  readonly chat: ChatFlowDeps;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly bodyLimitBytes: number;
  /** Whether the mesh behind the gateway can serve (for /readyz). */
  readonly ready: () => Promise<boolean>;
}

/** Builds the OpenAI-compatible HTTP API on Fastify. */
export function buildHttpServer(deps: HttpServerDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // One log line per request is left to tracing and metrics; errors are still logged.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: "request_id" }),
    bodyLimit: deps.bodyLimitBytes,
    requestIdHeader: "x-request-id",
    genReqId: () => randomUUID(),
    // Clients stream for minutes; idle keep-alive sockets are closed after 72 s like
    // most load balancers expect.
    keepAliveTimeout: 72_000,
  });

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof ApiError) return sendError(reply, error);
    if (error.statusCode === 413) {
      return sendError(reply, new ApiError(Status.INVALID_ARGUMENT, `the request body is larger than ${deps.bodyLimitBytes} bytes`, { code: "request_too_large" })).code(413);
    }
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      // Fastify's own client errors: malformed JSON, wrong content type, and so on.
      const invalidJson = error.code === "FST_ERR_CTP_INVALID_JSON_BODY" || error instanceof SyntaxError;
      const message = invalidJson ? `the request body is not valid JSON: ${error.message}` : error.message;
      return sendError(reply, new ApiError(Status.INVALID_ARGUMENT, message, { code: invalidJson ? "invalid_json" : undefined })).code(error.statusCode);
    }
    const apiError = toApiError(error);
    if (apiError.status === Status.INTERNAL) request.log.error({ err: error }, "request failed");
    return sendError(reply, apiError);
  });

  app.setNotFoundHandler((request, reply) =>
    sendError(reply, new ApiError(Status.NOT_FOUND, `Unknown request URL: ${request.method} ${request.url.split("?")[0]}`, { code: "unknown_url" })),
  );

  registerChatCompletions(app, deps.chat);
  registerModels(app, deps.chat.catalog, Math.floor(Date.now() / 1000));

  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_request, reply) => {
    const ready = await deps.ready().catch(() => false);
    return reply.code(ready ? 200 : 503).send({ status: ready ? "ready" : "not ready" });
  });
  app.get("/metrics", async (_request, reply) => reply.type(deps.registry.contentType).send(await deps.registry.metrics()));
  return app;
}
