import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";
import { ServerCredentials } from "@grpc/grpc-js";
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { node, tracing } from "@opentelemetry/sdk-node";
import { type CallContext, createChannel, createClientFactory, createServer, type Server, ServerError, Status } from "nice-grpc";
import { HealthDefinition, HealthServiceImpl, HealthState } from "nice-grpc-server-health";
import { DebugServiceDefinition } from "../../../gen/infermesh/debug/v1/debug_service.js";
import { WorkerServiceDefinition } from "../../../gen/infermesh/worker/v1/worker_service.js";
import { waitFor } from "../../../test/support/harness.js";
import { callSpan, SynchronousContextManager, traceClientCalls, traceServerCalls } from "./tracing.js";

const exporter = new tracing.InMemorySpanExporter();
const provider = new node.NodeTracerProvider({ spanProcessors: [new tracing.SimpleSpanProcessor(exporter)] });
let server: Server;
let address: string;
/** What the server's handlers saw as their active span. */
const seenSpanIds: string[] = [];
/** How the debug handler answers: ok, or a gRPC error. */
let debugAnswer: Status = Status.OK;
/** Lets the streaming handler, which ignores its cancellation, finish. */
let releaseGenerate: () => void = () => undefined;

before(async () => {
  provider.register({ contextManager: new SynchronousContextManager() });
  server = createServer().use(traceServerCalls());
  server.add(DebugServiceDefinition, {
    async getDebugInfo(_request: unknown, context: CallContext) {
      seenSpanIds.push(callSpan(context)?.spanContext().spanId ?? "");
      if (debugAnswer !== Status.OK) throw new ServerError(debugAnswer, "asked to fail");
      return {};
    },
  });
  const unimplemented = Object.keys(WorkerServiceDefinition.methods).map((name) => [
    name,
    () => Promise.reject(new ServerError(Status.UNIMPLEMENTED, name)),
  ]);
  server.add(WorkerServiceDefinition, {
    ...Object.fromEntries(unimplemented),
    async *generate(_request: unknown, context: CallContext) {
      yield { event: { $case: "started", value: { workerId: "w" } } };
      seenSpanIds.push(callSpan(context)?.spanContext().spanId ?? "");
      // A handler slow to notice the cut: its span must not wait for it.
      await new Promise<void>((resolve) => {
        releaseGenerate = resolve;
      });
    },
  } as never);
  server.add(HealthDefinition, HealthServiceImpl(HealthState()));
  address = `127.0.0.1:${await server.listen("127.0.0.1:0", ServerCredentials.createInsecure())}`;
});

after(async () => {
  await server.shutdown();
  await provider.shutdown();
});

beforeEach(() => {
  exporter.reset();
  seenSpanIds.length = 0;
  debugAnswer = Status.OK;
});

const client = <T extends typeof DebugServiceDefinition | typeof WorkerServiceDefinition | typeof HealthDefinition>(definition: T) =>
  createClientFactory().use(traceClientCalls()).create(definition, createChannel(address));

const spans = () => exporter.getFinishedSpans();
const spanOf = (kind: SpanKind) => spans().find((span) => span.kind === kind);

test("a call is a CLIENT span and a SERVER span in one trace, named by method; the handler finds its span", async () => {
  await client(DebugServiceDefinition).getDebugInfo({});
  const clientSpan = spanOf(SpanKind.CLIENT)!;
  const serverSpan = spanOf(SpanKind.SERVER)!;
  assert.equal(clientSpan.name, "infermesh.debug.v1.DebugService/GetDebugInfo");
  assert.equal(serverSpan.name, "infermesh.debug.v1.DebugService/GetDebugInfo");
  assert.equal(serverSpan.spanContext().traceId, clientSpan.spanContext().traceId);
  assert.equal(serverSpan.parentSpanContext?.spanId, clientSpan.spanContext().spanId);
  assert.deepEqual(seenSpanIds, [serverSpan.spanContext().spanId]);
  assert.equal(serverSpan.attributes["rpc.service"], "infermesh.debug.v1.DebugService");
  assert.equal(serverSpan.attributes["rpc.method"], "GetDebugInfo");
  assert.equal(serverSpan.attributes["rpc.grpc.status_code"], Status.OK);
  assert.equal(serverSpan.status.code, SpanStatusCode.UNSET);
});

test("a server's failure is an error on both sides; a caller's mistake only on the caller's", async () => {
  debugAnswer = Status.INTERNAL;
  await assert.rejects(client(DebugServiceDefinition).getDebugInfo({}));
  assert.equal(spanOf(SpanKind.SERVER)!.status.code, SpanStatusCode.ERROR);
  assert.equal(spanOf(SpanKind.CLIENT)!.status.code, SpanStatusCode.ERROR);

  exporter.reset();
  debugAnswer = Status.INVALID_ARGUMENT;
  await assert.rejects(client(DebugServiceDefinition).getDebugInfo({}));
  assert.equal(spanOf(SpanKind.SERVER)!.status.code, SpanStatusCode.UNSET);
  assert.equal(spanOf(SpanKind.SERVER)!.attributes["rpc.grpc.status_code"], Status.INVALID_ARGUMENT);
  assert.equal(spanOf(SpanKind.CLIENT)!.status.code, SpanStatusCode.ERROR);
});

test("a stream its caller cancels ends both spans as CANCELLED, before the handler has noticed", async () => {
  const cut = new AbortController();
  const stream = client(WorkerServiceDefinition).generate({}, { signal: cut.signal });
  let events = 0;
  await assert.rejects(async () => {
    for await (const _event of stream) {
      events += 1;
      cut.abort();
    }
  });
  assert.equal(events, 1);
  const serverSpan = await waitFor("the server span, while its handler still runs", () => spanOf(SpanKind.SERVER));
  releaseGenerate();
  assert.equal(serverSpan.attributes["rpc.grpc.status_code"], Status.CANCELLED);
  assert.equal(serverSpan.attributes["infermesh.cancelled_by_client"], true);
  assert.equal(spanOf(SpanKind.CLIENT)!.attributes["rpc.grpc.status_code"], Status.CANCELLED);
  assert.equal(spanOf(SpanKind.CLIENT)!.status.code, SpanStatusCode.UNSET, "the caller chose to stop");
  assert.deepEqual(seenSpanIds, [serverSpan.spanContext().spanId], "each step of the stream runs in its span");
  assert.equal(spans().length, 2, "each span ended once");
});

test("a call made for a traced one is its child: the parent travels in the options, not in an ambient context", async () => {
  const parent = trace.getTracer("test").startSpan("request");
  await client(DebugServiceDefinition).getDebugInfo({}, { trace: trace.setSpan(ROOT_CONTEXT, parent) });
  parent.end();
  assert.equal(spanOf(SpanKind.CLIENT)!.parentSpanContext?.spanId, parent.spanContext().spanId);
  assert.equal(spanOf(SpanKind.SERVER)!.spanContext().traceId, parent.spanContext().traceId);
});

test("the context manager makes a context active for a synchronous run only, never across an await", async () => {
  const span = trace.getTracer("test").startSpan("s");
  const inside = trace.setSpan(ROOT_CONTEXT, span);
  const seen = context.with(inside, () => trace.getActiveSpan());
  assert.equal(seen, span);
  assert.equal(trace.getActiveSpan(), undefined);
  // Not AsyncLocalStorage, whose promise hooks double what every promise costs on Node 20.
  const afterAwait = await context.with(inside, async () => {
    await null;
    return trace.getActiveSpan();
  });
  assert.equal(afterAwait, undefined);
  span.end();
});

test("health checks are not traced", async () => {
  await client(HealthDefinition).check({ service: "" });
  assert.deepEqual(spans(), []);
});
