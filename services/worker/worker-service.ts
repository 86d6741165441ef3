import { isAbortError } from "abort-controller-x";
import { ServerError, Status, type CallContext, type ServiceImplementation } from "nice-grpc";
import { Counter, type Registry } from "prom-client";
import { FinishReason, ServingState } from "../../gen/infermesh/common/v1/common.js";
import {
  type GenerateRequest,
  type GenerateResponse,
  WorkerServiceDefinition,
} from "../../gen/infermesh/worker/v1/worker_service.js";
import type { Logger } from "../common/logger.js";
import { EngineError, type Engine, type GenerationEvent } from "./engines/engine.js";
import type { KvReservations } from "./kv-reservations.js";

/** The worker's engine and state, which change while the process runs. */
export interface WorkerRuntime {
  /** Set once the model has loaded. */
  engine: Engine | undefined;
  state: ServingState;
  /** Why the state is FAILED. */
  stateReason: string;
}

export interface WorkerServiceDeps {
  readonly workerId: string;
  readonly runtime: WorkerRuntime;
  readonly reservations: KvReservations;
  readonly registry: Registry;
  readonly logger: Logger;
}

const statusOf: Record<EngineError["kind"], Status> = {
  invalid_argument: Status.INVALID_ARGUMENT,
  not_found: Status.NOT_FOUND,
  unavailable: Status.UNAVAILABLE,
  internal: Status.INTERNAL,
};

/** An engine's refusal as the matching status; anything else is passed on as it is. */
function asServerError(error: unknown): unknown {
  return error instanceof EngineError ? new ServerError(statusOf[error.kind], error.message) : error;
}

/** WorkerService: generations, tokenization and self-description over one engine. */
export function createWorkerService(deps: WorkerServiceDeps): ServiceImplementation<typeof WorkerServiceDefinition> {
  const { runtime, logger } = deps;
  const servingEngine = (): Engine => {
    if (runtime.state !== ServingState.SERVING_STATE_SERVING || !runtime.engine) {
      throw new ServerError(Status.UNAVAILABLE, `the worker is not serving (${ServingState[runtime.state]})`);
    }
    return runtime.engine;
  };
  const generations = new Counter({
    name: "infermesh_worker_generations_total",
    help: "Generations by outcome",
    labelNames: ["outcome"] as const,
    registers: [deps.registry],
  });
  const generatedTokens = new Counter({
    name: "infermesh_worker_generation_tokens_total",
    help: "Tokens generated",
    registers: [deps.registry],
  });

  return {
    async *generate(request: GenerateRequest, context: CallContext): AsyncIterable<GenerateResponse> {
      const engine = servingEngine();
      if (request.model === "") throw new ServerError(Status.INVALID_ARGUMENT, "model must be set");
      if ((request.prompt === undefined) === (request.messages.length === 0)) {
        throw new ServerError(Status.INVALID_ARGUMENT, "exactly one of messages and prompt must be set");
      }
      const events = engine.generate(
        { requestId: request.requestId, model: request.model, messages: request.messages, prompt: request.prompt, sampling: request.sampling ?? { stop: [] } },
        context.signal,
      )[Symbol.asyncIterator]();

      // Errors before "started" are the request's fault or the engine's state: a status.
      let first: IteratorResult<GenerationEvent>;
      try {
        first = await events.next();
      } catch (error) {
        generations.inc({ outcome: "rejected" });
        if (error instanceof EngineError || isAbortError(error)) throw asServerError(error);
        logger.error({ err: error, request_id: request.requestId }, "generation failed to start");
        throw new ServerError(Status.INTERNAL, "the engine failed to start the generation");
      }
      if (first.done || first.value.kind !== "started") throw new ServerError(Status.INTERNAL, "the engine did not start");
      const started = first.value;
      const release = deps.reservations.hold(request.requestId, started.promptTokens + started.maxTokens);
      let outcome: "finished" | "cancelled" | "failed" | undefined;
      try {
        yield {
          event: {
            $case: "started",
            value: { workerId: deps.workerId, model: request.model, promptTokens: started.promptTokens, cachedTokens: started.cachedTokens },
          },
        };
        for (;;) {
          let next;
          try {
            next = await events.next();
          } catch (error) {
            if (isAbortError(error) || context.signal.aborted) throw error;
            outcome = "failed";
            logger.error({ err: error, request_id: request.requestId }, "generation failed");
            yield { event: { $case: "error", value: { statusCode: Status.INTERNAL, message: "the engine failed during generation", retryable: false } } };
            return;
          }
          if (next.done) break;
          const event = next.value;
          if (event.kind === "delta") {
            generatedTokens.inc(event.tokenCount);
            yield { event: { $case: "delta", value: { text: event.text, tokenCount: event.tokenCount } } };
          } else if (event.kind === "finished") {
            outcome = event.finishReason === FinishReason.FINISH_REASON_CANCELLED ? "cancelled" : "finished";
            yield {
              event: {
                $case: "finished",
                value: {
                  finishReason: event.finishReason,
                  usage: {
                    promptTokens: event.promptTokens,
                    completionTokens: event.completionTokens,
                    cachedTokens: event.cachedTokens,
                    reasoningTokens: 0,
                  },
                },
              },
            };
          }
        }
      } finally {
        // A caller that cancels stops reading before any terminal event.
        generations.inc({ outcome: outcome ?? "cancelled" });
        release();
        await events.return?.();
      }
    },

    async tokenize(request) {
      const engine = servingEngine();
      try {
        const tokens = await engine.tokenize(request.model, request.text);
        return { tokens, tokenCount: tokens.length };
      } catch (error) {
        throw asServerError(error);
      }
    },

    async getInfo() {
      return {
        workerId: deps.workerId,
        device: runtime.engine?.device ?? "",
        models: runtime.engine?.models() ?? [],
        maxSequences: runtime.engine?.maxSequences ?? 0,
        state: runtime.state,
        stateReason: runtime.stateReason,
      };
    },
  };
}
