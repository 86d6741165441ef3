/**
 * infermesh's own tracing: one nice-grpc middleware for clients, one for servers, and
 * a context manager that does not use AsyncLocalStorage.
 *
 * They replace OpenTelemetry's grpc-js and http auto-instrumentations and its
 * AsyncLocalStorage context manager. On Node 20 an AsyncLocalStorage, once used, turns
 * on V8's promise hooks for the whole process, and every promise then costs about twice
 * as much: the mesh, whose streams are async generators, spent 20–30 % more CPU per
 * request with tracing on, whether 3 % or 100 % of traces were kept
 * (`npm run bench:tracing`). So a trace's context is passed explicitly instead: a
 * server call's span is found from its CallContext (`callSpan`), and a client call is
 * given its parent in its options (`{ trace }`). What these do is what a trace needs: a
 * span per call, named as OpenTelemetry's RPC conventions ask
 * (`infermesh.worker.v1.WorkerService/Generate`), the W3C trace context carried in the
 * call's metadata, and the span ended however the call ends, a cancelled stream
 * included.
 *
 * Without an exporter (see register.ts) the API's tracer is a no-op and neither
 * middleware is installed.
 */
import {
  type Attributes,
  type Context,
  type ContextManager,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  trace,
  TraceFlags,
} from "@opentelemetry/api";
import { isAbortError } from "abort-controller-x";
import { type CallContext, ClientError, Metadata, type ClientMiddleware, ServerError, type ServerMiddleware, Status } from "nice-grpc";
import { MemoryGuardServiceDefinition } from "../../../gen/infermesh/memory/v1/memory_service.js";
import { RouterServiceDefinition } from "../../../gen/infermesh/router/v1/router_service.js";

/** Whether the standard OTEL_* variables ask for trace export. */
function tracingRequested(env: Readonly<Record<string, string | undefined>>): boolean {
  if (env.OTEL_SDK_DISABLED === "true") return false;
  const exporter = env.OTEL_TRACES_EXPORTER;
  if (exporter !== undefined && exporter !== "") return exporter !== "none";
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

/** Whether this process traces (its exporter is set up by register.ts from the same variables). */
export const tracingOn = tracingRequested(process.env);

export const tracer = trace.getTracer("infermesh");

/**
 * Calls that are no request's work: health checks, reflection and the membership
 * streams that live as long as a worker does (a span of hours helps nobody).
 */
const untracedPaths = new Set([
  `/${RouterServiceDefinition.fullName}/${RouterServiceDefinition.methods.connect.name}`,
  `/${MemoryGuardServiceDefinition.fullName}/${MemoryGuardServiceDefinition.methods.report.name}`,
  `/${MemoryGuardServiceDefinition.fullName}/${MemoryGuardServiceDefinition.methods.watch.name}`,
]);
const untraced = (path: string) => untracedPaths.has(path) || path.startsWith("/grpc.");

const metadataSetter: TextMapSetter<Metadata> = { set: (carrier, key, value) => carrier.set(key, value) };
const metadataGetter: TextMapGetter<Metadata> = {
  get: (carrier, key) => carrier.get(key) as string | undefined,
  keys: (carrier) => [...carrier].map(([key]) => key),
};

/** A call's span name and attributes, by OpenTelemetry's RPC conventions. */
function rpcSpanOptions(path: string, kind: SpanKind): RpcSpan {
  const key = `${kind}${path}`;
  let options = spanOptionsByMethod.get(key);
  if (options === undefined) {
    const name = path.slice(1);
    const slash = name.lastIndexOf("/");
    options = {
      name,
      options: { kind, attributes: { "rpc.system": "grpc", "rpc.service": name.slice(0, slash), "rpc.method": name.slice(slash + 1) } },
    };
    spanOptionsByMethod.set(key, options);
  }
  return options;
}

/** Worked out once per method and side (a few dozen in all), not per call; the SDK copies the attributes it is given. */
const spanOptionsByMethod = new Map<string, RpcSpan>();

/** A call's span name and its start options. */
interface RpcSpan {
  readonly name: string;
  readonly options: { readonly kind: SpanKind; readonly attributes: Attributes };
}

/**
 * Server spans are errors for the codes that mean the server failed; a client's own
 * mistake (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED…) is not.
 */
const serverErrorCodes = new Set([
  Status.UNKNOWN,
  Status.DEADLINE_EXCEEDED,
  Status.UNIMPLEMENTED,
  Status.INTERNAL,
  Status.UNAVAILABLE,
  Status.DATA_LOSS,
]);

/** Ends `span` with the call's gRPC status; `failed` tells which codes mark it ERROR. */
function endRpcSpan(span: Span, code: Status, failed: boolean, message?: string): void {
  span.setAttribute("rpc.grpc.status_code", code);
  if (failed) span.setStatus({ code: SpanStatusCode.ERROR, message });
  span.end();
}

/** A client call's options: `trace` is the context its span is a child of (a new trace without it). */
export interface TraceOptions {
  trace?: Context;
}

/**
 * A CLIENT span for every call, child of `options.trace`, whose trace context travels
 * in the call's metadata. A call the caller itself aborted is CANCELLED, not an error:
 * the callee did nothing wrong.
 */
export function traceClientCalls(): ClientMiddleware<TraceOptions> {
  return async function* traceClientCall(call, options) {
    const { trace: parent = ROOT_CONTEXT, ...callOptions } = options;
    if (untraced(call.method.path)) return yield* call.next(call.request, callOptions);
    const { name, options: spanOptions } = rpcSpanOptions(call.method.path, SpanKind.CLIENT);
    const span = tracer.startSpan(name, spanOptions, parent);
    const metadata = Metadata(callOptions.metadata);
    propagation.inject(trace.setSpan(parent, span), metadata, metadataSetter);
    // A trace not kept needs its decision passed on (above), and nothing else.
    if (!span.isRecording()) return yield* call.next(call.request, { ...callOptions, metadata });
    try {
      const result = yield* call.next(call.request, { ...callOptions, metadata });
      endRpcSpan(span, Status.OK, false);
      return result;
    } catch (error) {
      if (error instanceof ClientError) endRpcSpan(span, error.code, true, error.details);
      else if (isAbortError(error)) endRpcSpan(span, Status.CANCELLED, false);
      else endRpcSpan(span, Status.UNKNOWN, true, (error as Error).message);
      throw error;
    } finally {
      // A stream its consumer stopped reading (return()): ended here, once.
      if (span.isRecording()) endRpcSpan(span, Status.CANCELLED, false);
    }
  };
}

/** The trace context of each call being served, by its CallContext's signal (one per call). */
const callTraces = new WeakMap<AbortSignal, Context>();

/** The trace context of a call `traceServerCalls` traces: its span's, for a client call made on its behalf. */
export function callTrace(callContext: CallContext): Context | undefined {
  return callTraces.get(callContext.signal);
}

/** The span of a call `traceServerCalls` traces, for the handler's attributes. */
export function callSpan(callContext: CallContext): Span | undefined {
  const active = callTraces.get(callContext.signal);
  return active && trace.getSpan(active);
}

/** A span's ids as log fields, so a log line leads to its trace. */
export function traceFields(span: Span | undefined): { trace_id?: string; span_id?: string } {
  if (span === undefined) return {};
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}

/**
 * The exemplar a latency sample carries: the trace id of a span whose trace is kept
 * (an exemplar must lead to a stored trace), or none.
 */
export function exemplarOf(span: Span | undefined): { trace_id: string } | undefined {
  const spanContext = span?.spanContext();
  return spanContext && (spanContext.traceFlags & TraceFlags.SAMPLED) !== 0 ? { trace_id: spanContext.traceId } : undefined;
}

/**
 * A SERVER span for every call, continuing the caller's trace from the metadata; the
 * handler finds it with `callSpan`. A call its client cancelled ends its span at the
 * cancellation, whatever the handler does next, so a cut request still exports the
 * work it did here.
 */
export function traceServerCalls(): ServerMiddleware {
  return async function* traceServerCall(call, callContext) {
    if (untraced(call.method.path)) return yield* call.next(call.request, callContext);
    const { name, options: spanOptions } = rpcSpanOptions(call.method.path, SpanKind.SERVER);
    const parent = propagation.extract(ROOT_CONTEXT, callContext.metadata, metadataGetter);
    const span = tracer.startSpan(name, spanOptions, parent);
    callTraces.set(callContext.signal, trace.setSpan(parent, span));
    // A trace not kept has nothing to end: its context is all the handler needs.
    if (!span.isRecording()) return yield* call.next(call.request, callContext);
    let ended = false;
    const end = (code: Status, message?: string) => {
      if (ended) return;
      ended = true;
      endRpcSpan(span, code, serverErrorCodes.has(code), message);
    };
    const onCancel = () => {
      span.setAttribute("infermesh.cancelled_by_client", true);
      end(Status.CANCELLED);
    };
    callContext.signal.addEventListener("abort", onCancel, { once: true });
    try {
      const result = yield* call.next(call.request, callContext);
      end(Status.OK);
      return result;
    } catch (error) {
      if (error instanceof ServerError) end(error.code, error.details);
      else if (isAbortError(error)) end(Status.CANCELLED);
      else end(Status.UNKNOWN, (error as Error).message);
      throw error;
    } finally {
      callContext.signal.removeEventListener("abort", onCancel);
      // A stream its consumer stopped early (the call was cut).
      end(Status.CANCELLED);
    }
  };
}

/**
 * The context manager tracing runs with: `with` makes a context active for the
 * synchronous run of its function only, like a browser's stack context manager. Not
 * AsyncLocalStorage (see the file comment): nothing in infermesh reads the active
 * context across an await; what must cross one is passed explicitly.
 */
export class SynchronousContextManager implements ContextManager {
  private current: Context = ROOT_CONTEXT;

  active(): Context {
    return this.current;
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    context: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    const previous = this.current;
    this.current = context;
    try {
      return fn.call(thisArg, ...args);
    } finally {
      this.current = previous;
    }
  }

  bind<T>(context: Context, target: T): T {
    if (typeof target !== "function") return target;
    const manager = this;
    return function bound(this: unknown, ...args: unknown[]) {
      return manager.with(context, () => target.apply(this, args));
    } as T;
  }

  enable(): this {
    return this;
  }

  disable(): this {
    this.current = ROOT_CONTEXT;
    return this;
  }
}
