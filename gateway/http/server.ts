import { randomUUID } from "node:crypto";
import cors from "@fastify/cors";
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from "fastify";
import { Status } from "nice-grpc";
import type { Registry } from "prom-client";
import { ApiError, toApiError } from "../errors.js";
import { nestingDepth } from "../../services/common/json-schema.js";
import type { Logger } from "../../services/common/logger.js";
import { scrape } from "../../services/common/metrics.js";
import type { Api } from "../observability/request-metrics.js";
import { registerChatCompletions } from "./chat-completions/route.js";
import { registerCompletions } from "./completions/route.js";
import type { HttpDeps } from "./deps.js";
import { registerEmbeddings } from "./embeddings/route.js";
import { sendError } from "./errors.js";
import { registerModelAdmin } from "./admin/model-admin.js";
import { registerTrafficSplitAdmin } from "./admin/traffic-split-admin.js";
import { registerRolloutAdmin } from "./admin/rollout-admin.js";
import { registerWorkerAdmin } from "./admin/worker-admin.js";
import { registerDebugBundle } from "./admin/debug-bundle.js";
import { registerConfigAdmin } from "./admin/config-admin.js";
import type { DebugSource } from "../../services/common/debug-info.js";
import { registerModels } from "./models/route.js";
import { registerResponses } from "./responses/route.js";
import { endRequestSpan, inRequestContext, startRequestSpan } from "./tracing.js";

export interface HttpServerDeps extends HttpDeps {
  readonly registry: Registry;
  readonly logger: Logger;
  readonly bodyLimitBytes: number;
  /** Origins allowed to call the API from a browser; empty turns CORS off. */
  readonly corsOrigins: readonly string[];
  /** Whether the mesh behind the gateway can serve (for /readyz). */
  readonly ready: () => Promise<boolean>;
  /** The gateway's own part of a bug report (GET /debug/bundle). */
  readonly debug: DebugSource;
}

/** An incoming x-request-id is kept when it is a plain token; anything else is replaced. */
const acceptableRequestId = /^[\w.:/-]{1,128}$/;

const isLoopback = (address: string | undefined) =>
  address === "::1" || address === "::ffff:127.0.0.1" || (address?.startsWith("127.") ?? false);

/** OpenAI's 404 for a URL no route serves; `why` says why the router could not read it. */
const unknownUrl = (method: string, url: string, why?: string) =>
  new ApiError(Status.NOT_FOUND, `Unknown request URL: ${method} ${url.split("?")[0]}${why ? ` (${why})` : ""}`, { code: "unknown_url" });

/** Deepest nesting of objects and arrays a JSON body may have. */
const maxBodyDepth = 64;

/** The routes whose requests are observed (metrics, access event), by API. */
const apiRoutes = new Map<string, Api>(
  (["/v1", "/api/v1"] as const).flatMap((prefix) => [
    [`${prefix}/chat/completions`, "chat"],
    [`${prefix}/completions`, "completions"],
    [`${prefix}/responses`, "responses"],
    [`${prefix}/embeddings`, "embeddings"],
  ]),
);

/** Paths that answer without an API key: probes and the Prometheus scrape. They are not traced either: a poll a second would be a trace a second. */
const openPaths = new Set(["/healthz", "/readyz", "/metrics"]);

/** Builds the OpenAI-compatible HTTP API on Fastify. */
export function buildHttpServer(deps: HttpServerDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // One log line per request is left to tracing and metrics; errors are still logged.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: "request_id" }),
    bodyLimit: deps.bodyLimitBytes,
    requestIdHeader: false,
    genReqId: (request) => {
      const incoming = request.headers["x-request-id"];
      return typeof incoming === "string" && acceptableRequestId.test(incoming) ? incoming : randomUUID();
    },
    // Clients stream for minutes; idle keep-alive sockets are closed after 72 s like
    // most load balancers expect.
    keepAliveTimeout: 72_000,
    // A URL the router cannot even decode ("/v1/models/%ff") gets the OpenAI shape too.
    frameworkErrors: (error, request, reply) => {
      void sendError(reply, unknownUrl(request.method, request.url, error.message));
    },
  });
  // JSON bodies: nesting is bounded before parsing, so nothing later (parsing, schema
  // checks, serialising) recurses deep enough to overflow a stack.
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, text, done) => {
    const depth = nestingDepth(text as string);
    if (depth > maxBodyDepth) {
      done(
        new ApiError(Status.INVALID_ARGUMENT, `the request body nests ${depth} levels deep; at most ${maxBodyDepth}`, {
          code: "invalid_json",
        }),
        undefined,
      );
      return;
    }
    parseJson(request, text as string, done);
  });
  app.decorateRequest("identity", undefined);
  app.decorateRequest("observation", undefined);
  app.decorateRequest("trace", undefined);

  if (deps.corsOrigins.length > 0) {
    void app.register(cors, {
      origin: deps.corsOrigins.includes("*") ? true : [...deps.corsOrigins],
      exposedHeaders: ["x-request-id", "retry-after", "x-infermesh-cache"],
      maxAge: 600,
    });
  }

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
    // The matched route's pattern, as the router decoded the path ("/%61dmin/x" is "/admin/x");
    // the raw path only for URLs no route matches.
    const route = request.routeOptions.url;
    const path = route ?? request.url.split("?", 1)[0]!;
    const requestTrace = openPaths.has(path) ? undefined : startRequestSpan(request, route);
    request.trace = requestTrace;
    const api = request.method === "POST" ? apiRoutes.get(route ?? "") : undefined;
    const observation = api ? deps.flow.observer.start(api, request.id, requestTrace?.context) : undefined;
    request.observation = observation;
    if (requestTrace || observation) {
      // After the last byte, or the caller leaving first (a stream it closed).
      reply.raw.once("close", () => {
        // An event handler: nothing thrown here may reach the process.
        try {
          observation?.end({ httpStatus: reply.raw.statusCode, callerLeft: !reply.raw.writableFinished });
          if (requestTrace) endRequestSpan(requestTrace, reply.raw.statusCode, !observation);
        } catch (error) {
          request.log.error({ err: error }, "the request's observation failed");
        }
      });
    }
    if (openPaths.has(path) || request.method === "OPTIONS") return;
    request.identity = deps.access.authenticate(request.headers.authorization);
    if (/^\/(admin|debug)(\/|$)/i.test(path)) deps.access.requireAdmin(request.identity, isLoopback(request.socket.remoteAddress));
  });

  app.setErrorHandler((error: FastifyError, request, reply) => inRequestContext(request, () => handleError(error, request, reply)));

  function handleError(error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
    if (error instanceof ApiError) {
      request.observation?.fail(error);
      return sendError(reply, error);
    }
    if (error.statusCode === 413) {
      return sendError(
        reply,
        new ApiError(Status.INVALID_ARGUMENT, `the request body is larger than ${deps.bodyLimitBytes} bytes`, {
          code: "request_too_large",
        }),
        413,
      );
    }
    if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
      // Fastify's own client errors: malformed JSON, wrong content type, and so on.
      const invalidJson = error.code === "FST_ERR_CTP_INVALID_JSON_BODY" || error instanceof SyntaxError;
      const message = invalidJson ? `the request body is not valid JSON: ${error.message}` : error.message;
      return sendError(
        reply,
        new ApiError(Status.INVALID_ARGUMENT, message, { code: invalidJson ? "invalid_json" : undefined }),
        error.statusCode,
      );
    }
    const apiError = toApiError(error);
    request.observation?.fail(apiError);
    if (apiError.status === Status.INTERNAL) request.log.error({ err: error }, "request failed");
    return sendError(reply, apiError);
  }

  app.setNotFoundHandler((request, reply) => sendError(reply, unknownUrl(request.method, request.url)));

  registerChatCompletions(app, deps);
  registerCompletions(app, deps);
  registerEmbeddings(app, deps);
  registerResponses(app, deps);
  registerModels(app, deps.flow.catalog, Math.floor(Date.now() / 1000));
  registerModelAdmin(app, deps.flow.clients, deps.flow.catalog);
  registerWorkerAdmin(app, deps.flow.clients);
  registerTrafficSplitAdmin(app, deps.flow.clients);
  registerRolloutAdmin(app, deps.flow.clients);
  registerDebugBundle(app, { clients: deps.flow.clients, gateway: deps.debug, recent: deps.flow.observer.recent });
  registerConfigAdmin(app, { clients: deps.flow.clients, gateway: deps.debug });

  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_request, reply) => {
    const ready = await deps.ready().catch(() => false);
    return reply.code(ready ? 200 : 503).send({ status: ready ? "ready" : "not ready" });
  });
  app.get("/metrics", async (request, reply) => {
    const { contentType, text } = await scrape(deps.registry, request.headers.accept);
    return reply.type(contentType).send(text);
  });
  return app;
}
