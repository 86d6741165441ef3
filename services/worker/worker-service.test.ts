import test from "node:test";
import assert from "node:assert/strict";
import { createMetricsRegistry } from "../common/metrics.js";
import type { CallContext } from "nice-grpc";
import { ChatMessage } from "../../gen/infermesh/common/v1/common.js";
import { GenerateRequest } from "../../gen/infermesh/worker/v1/worker_service.js";
import { createLogger } from "../common/logger.js";
import { EngineHost } from "./engine-host.js";
import { EngineError, type Engine, type GenerationEvent, type GenerationInput } from "./engines/engine.js";
import { SimEngine } from "./engines/sim/sim-engine.js";
import { Arrivals } from "./arrivals.js";
import { FailureWindow } from "./failure-window.js";
import { KvReservations } from "./kv-reservations.js";
import { createWorkerService } from "./worker-service.js";

/**
 * The simulator, except that a prompt saying "engine-fault-at-start" or
 * "engine-fault-mid-stream" makes it fail there, as a broken GPU would: the one thing
 * a real engine cannot be made to do on demand.
 */
function faultyEngine(): Engine {
  const sim = SimEngine.create({ timeScale: 0, answerTokensMin: 8, answerTokensMax: 8 });
  return Object.assign(Object.create(sim) as Engine, {
    async *generate(input: GenerationInput, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
      const text = input.messages.map((message) => message.content).join(" ");
      if (text.includes("engine-fault-at-start")) throw new EngineError("internal", "the device is lost");
      for await (const event of sim.generate(input, signal)) {
        yield event;
        if (event.kind === "started" && text.includes("engine-fault-mid-stream")) throw new Error("the device is lost");
      }
    },
  });
}

function setup() {
  const runtime = new EngineHost({ loader: undefined, modelDir: ".", drainGraceMs: 0 });
  const engine = faultyEngine();
  runtime.serve(engine);
  const failures = new FailureWindow();
  const arrivals = new Arrivals();
  const service = createWorkerService({
    workerId: "w",
    runtime,
    reservations: new KvReservations(),
    failures,
    arrivals,
    registry: createMetricsRegistry("worker"),
    logger: createLogger("worker", "fatal"),
  });
  const model = engine.models()[0]!.id;
  const generate = async (content: string, requestId = "r") => {
    const request = GenerateRequest.create({ requestId, model, messages: [ChatMessage.create({ role: "user", content })] });
    const context = { signal: new AbortController().signal } as CallContext;
    try {
      for await (const _event of service.generate!(request, context)) {
        // Drain it.
      }
      return "ok";
    } catch (error) {
      return (error as Error).message;
    }
  };
  return { generate, failures, arrivals };
}

test("the engine's own failures count against the worker's health; bad requests do not", async () => {
  const { generate, failures } = setup();
  assert.equal(await generate("hello"), "ok");
  assert.equal(await generate("hello again"), "ok");
  assert.equal(failures.ratio(), 0);
  assert.match(await generate("engine-fault-at-start"), /device is lost/);
  assert.equal(await generate("engine-fault-mid-stream"), "ok", "a failure after the start ends the stream with an error event");
  assert.equal(failures.ratio(), 0.5);
  assert.match(await generate("x".repeat(600_000)), /context/, "a prompt over the context is the request's fault");
  assert.equal(failures.ratio(), 0.5);
});

test("every request that reaches the worker is listed once for the next load report, refused or not", async () => {
  const { generate, arrivals } = setup();
  // One list per router replica: each learns of every arrival.
  const [router0, router1] = [arrivals.reader(), arrivals.reader()];
  await generate("hello", "first");
  await generate("engine-fault-at-start", "second");
  assert.deepEqual(router0.take(), ["first", "second"]);
  assert.deepEqual(router0.take(), [], "a report takes them");
  assert.deepEqual(router1.take(), ["first", "second"]);
  const bounded = new Arrivals(2);
  const reader = bounded.reader();
  for (const id of ["a", "b", "c", "d", "e"]) bounded.note(id);
  assert.deepEqual(reader.take(), ["d", "e"], "with no router to take them, only the newest are kept");
});
