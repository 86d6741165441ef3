/**
 * The gateway's HTTP server spans, made by Fastify hooks rather than by patching
 * Node's http module (see services/common/telemetry/tracing.ts for why): one SERVER
 * span per request, named by route as OpenTelemetry's HTTP conventions ask
 * (`POST /v1/chat/completions`), continuing a caller's W3C trace context. The calls
 * made for the request are its children by passing its context (`RequestTrace.context`,
 * kept by the request's observation), not through AsyncLocalStorage (see
 * services/common/telemetry/tracing.ts).
 */
import { type Context, context, propagation, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { FastifyRequest } from "fastify";
import { tracer, tracingOn } from "../../services/common/telemetry/tracing.js";

/** A request's span and the context its work runs in. */
export interface RequestTrace {
  readonly span: Span;
  readonly context: Context;
}

/** Starts the span of `request`, matched to `route` (undefined for URLs no route serves). */
export function startRequestSpan(request: FastifyRequest, route: string | undefined): RequestTrace | undefined {
  if (!tracingOn) return undefined;
  const parent = propagation.extract(ROOT_CONTEXT, request.headers);
  const userAgent = request.headers["user-agent"];
  const span = tracer.startSpan(
    route ? `${request.method} ${route}` : request.method,
    {
      kind: SpanKind.SERVER,
      attributes: {
        "http.request.method": request.method,
        "url.path": request.url.split("?", 1)[0],
        "url.scheme": request.protocol,
        "network.protocol.version": request.raw.httpVersion,
        "client.address": request.ip,
        ...(route ? { "http.route": route } : {}),
        ...(userAgent ? { "user_agent.original": userAgent } : {}),
      },
    },
    parent,
  );
  return { span, context: trace.setSpan(parent, span) };
}

/**
 * Ends a request's span with its status: a 5xx is an error. `errorType` names the
 * error unless something (the request's observation) already named it better.
 */
export function endRequestSpan(requestTrace: RequestTrace, statusCode: number, nameError: boolean): void {
  const { span } = requestTrace;
  span.setAttribute("http.response.status_code", statusCode);
  if (statusCode >= 500) {
    if (nameError) span.setAttribute("error.type", String(statusCode));
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
  span.end();
}

/** Runs `work`, synchronous, in `request`'s trace context: the log lines it writes carry the trace id. */
export function inRequestContext<T>(request: FastifyRequest, work: () => T): T {
  return request.trace ? context.with(request.trace.context, work) : work();
}
