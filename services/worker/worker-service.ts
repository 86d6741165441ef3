import { callSpan } from "../common/telemetry/tracing.js";
import { randomInt } from "node:crypto";
import { isAbortError } from "abort-controller-x";
import { ServerError, Status, type CallContext, type ServiceImplementation } from "nice-grpc";
import { Counter, type Registry } from "prom-client";
import { FinishReason, SamplingParams, ServingState, type Usage } from "../../gen/infermesh/common/v1/common.js";
import type { GenerateRequest, GenerateResponse, WorkerServiceDefinition } from "../../gen/infermesh/worker/v1/worker_service.js";
import type { Logger } from "../common/logger.js";
import { classOf } from "../common/priority-classes.js";
import { checkJsonSchema } from "../common/json-schema.js";
import { maxChatMessages, maxChoices, maxEmbeddingInputs } from "../common/request-limits.js";
import { type ChoiceEvent, coalesceDeltas, mergeChoices } from "./choices.js";
import { EngineError, type Engine, type GenerationEvent } from "./engines/engine.js";
import type { EngineHost } from "./engine-host.js";
import type { Arrivals } from "./arrivals.js";
import type { FailureWindow } from "./failure-window.js";
import type { OutcomeLog } from "./outcome-log.js";
import type { KvReservations } from "./kv-reservations.js";
import { VllmMetrics } from "./vllm-metrics.js";
import { kvNeedTokens } from "../common/kv-need.js";

export interface WorkerServiceDeps {
  readonly workerId: string;
  readonly runtime: EngineHost;
  readonly reservations: KvReservations;
  /** Where generations' outcomes go, for the health the router sees. */
  readonly failures: FailureWindow;
  /** How each generation ended, for the routers' canary rollouts. */
  readonly outcomes?: OutcomeLog;
  /** Where arriving requests' ids go, for the router's in-flight accounting. */
  readonly arrivals: Arrivals;
  readonly registry: Registry;
  readonly logger: Logger;
}

const statusOf: Record<EngineError["kind"], Status> = {
  invalid_argument: Status.INVALID_ARGUMENT,
  not_found: Status.NOT_FOUND,
  failed_precondition: Status.FAILED_PRECONDITION,
  unavailable: Status.UNAVAILABLE,
  resource_exhausted: Status.RESOURCE_EXHAUSTED,
  deadline_exceeded: Status.DEADLINE_EXCEEDED,
  permission_denied: Status.PERMISSION_DENIED,
  unauthenticated: Status.UNAUTHENTICATED,
  unimplemented: Status.UNIMPLEMENTED,
  internal: Status.INTERNAL,
};

/** An engine's refusal as the matching status; anything else is passed on as it is. */
function asServerError(error: unknown): unknown {
  return error instanceof EngineError ? new ServerError(statusOf[error.kind], error.message) : error;
}

/** Calls `work`, turning an engine's refusal into its status. */
async function engineCall<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw asServerError(error);
  }
}

/** WorkerService: generations, tokenization, embeddings and self-description over one engine. */
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
  const vllm = new VllmMetrics(deps.registry);

  return {
    async *generate(request: GenerateRequest, context: CallContext): AsyncIterable<GenerateResponse> {
      const engine = servingEngine();
      const timing = vllm.track(request.model, callSpan(context));
      /** A generation that ended for the engine's sake, well or not: the health score and the rollouts count it. */
      const ended = (failed: boolean) => {
        deps.failures.record(failed);
        deps.outcomes?.record({ model: request.model, failed, ...(failed ? {} : timing.latencies()) });
      };
      if (request.model === "") throw new ServerError(Status.INVALID_ARGUMENT, "model must be set");
      if ((request.prompt === undefined) === (request.messages.length === 0)) {
        throw new ServerError(Status.INVALID_ARGUMENT, "exactly one of messages and prompt must be set");
      }
      if (request.messages.length > maxChatMessages) {
        throw new ServerError(Status.INVALID_ARGUMENT, `messages: ${request.messages.length} given, at most ${maxChatMessages}`);
      }
      const sampling = request.sampling ?? SamplingParams.create();
      // Schemas become grammars in the engine: a broken one is refused here, not logged there.
      const schemas: [string, string][] = request.tools.map((tool, index) => [`tools[${index}].function.parameters`, tool.parametersJson]);
      if (sampling.responseFormat?.format?.$case === "jsonSchema")
        schemas.push(["response_format.json_schema.schema", sampling.responseFormat.format.value.schemaJson || "{}"]);
      for (const [field, text] of schemas) {
        const problem = text === "" ? undefined : checkJsonSchema(text);
        if (problem) throw new ServerError(Status.INVALID_ARGUMENT, `${field}: ${problem}`);
      }
      const n = sampling.n ?? 1;
      if (n < 1 || n > maxChoices) throw new ServerError(Status.INVALID_ARGUMENT, `n must be between 1 and ${maxChoices}`);

      // Each choice is one engine generation; choice i samples with seed + i so a seeded
      // request is reproducible and its choices still differ (an unseeded request with
      // several choices gets a random seed, so deterministic engines differ too).
      const seed = sampling.seed ?? (n > 1 ? randomInt(0, 2 ** 31) : undefined);
      const cancel = new AbortController();
      const onCancel = () => cancel.abort(context.signal.reason);
      context.signal.addEventListener("abort", onCancel, { once: true });
      const choices = Array.from({ length: n }, (_, index) =>
        engine
          .generate(
            {
              requestId: request.requestId,
              model: request.model,
              messages: request.messages,
              prompt: request.prompt,
              sampling: { ...sampling, seed: seed === undefined ? undefined : (seed + index) >>> 0 },
              tools: request.tools,
              toolChoice: request.toolChoice,
              reasoningEffort: request.reasoningEffort,
              sessionId: request.sessionId,
              priority: classOf(request.priorityClass) ?? "standard",
            },
            cancel.signal,
          )
          [Symbol.asyncIterator](),
      );
      const closeAll = async () => {
        cancel.abort();
        context.signal.removeEventListener("abort", onCancel);
        await Promise.allSettled(choices.map((choice) => choice.return?.()));
      };

      deps.arrivals.note(request.requestId);
      // Errors before "started" are the request's fault or the engine's state: a status.
      // Only the first choice is awaited here (the others share its input, so they would
      // be refused alike); they start as the engine has room, once the stream is read.
      // Waiting for every choice to start would deadlock when a request asks for more
      // choices than the engine has free sequences: the started ones hold theirs
      // unread while the rest wait for one.
      let first: IteratorResult<GenerationEvent>;
      try {
        first = await choices[0]!.next();
      } catch (error) {
        await closeAll();
        generations.inc({ outcome: "rejected" });
        // The engine's own faults count against its health; a bad request or a cancel does not.
        const enginesFault =
          !isAbortError(error) && (!(error instanceof EngineError) || error.kind === "internal" || error.kind === "unavailable");
        if (enginesFault) ended(true);
        if (error instanceof EngineError || isAbortError(error)) throw asServerError(error);
        logger.error({ err: error, request_id: request.requestId }, "generation failed to start");
        throw new ServerError(Status.INTERNAL, "the engine failed to start the generation");
      }
      if (first.done || first.value.kind !== "started") {
        await closeAll();
        ended(true);
        throw new ServerError(Status.INTERNAL, "the engine did not start");
      }
      const started = first.value;
      timing.started(started.promptTokens);
      const release = deps.reservations.hold(kvNeedTokens(started.promptTokens, started.maxTokens, n));
      const usage: Usage = {
        promptTokens: started.promptTokens,
        completionTokens: 0,
        cachedTokens: started.cachedTokens,
        reasoningTokens: 0,
      };
      let firstFinish = FinishReason.FINISH_REASON_UNSPECIFIED;
      let outcome: "finished" | "cancelled" | "failed" | undefined;
      try {
        yield {
          event: {
            $case: "started",
            value: {
              workerId: deps.workerId,
              model: request.model,
              promptTokens: started.promptTokens,
              cachedTokens: started.cachedTokens,
            },
          },
        };
        const events = coalesceDeltas(mergeChoices(choices));
        for (;;) {
          let next: IteratorResult<ChoiceEvent>;
          try {
            next = await events.next();
          } catch (error) {
            if (isAbortError(error) || context.signal.aborted) throw error;
            outcome = "failed";
            logger.error({ err: error, request_id: request.requestId }, "generation failed");
            yield {
              event: {
                $case: "error",
                value: { statusCode: Status.INTERNAL, message: "the engine failed during generation", retryable: false },
              },
            };
            return;
          }
          if (next.done) break;
          const { index, event } = next.value;
          if (event.kind === "delta") {
            timing.tokens(index, event.tokenCount);
            yield {
              event: {
                $case: "delta",
                value: {
                  index,
                  text: event.text,
                  reasoningText: event.reasoningText ?? "",
                  tokenCount: event.tokenCount,
                  logprobs: event.logprobs ? [...event.logprobs] : [],
                  toolCalls: [...(event.toolCalls ?? [])],
                },
              },
            };
          } else if (event.kind === "finished") {
            usage.completionTokens += event.completionTokens;
            usage.reasoningTokens += event.reasoningTokens;
            if (index === 0) firstFinish = event.finishReason;
            yield {
              event: { $case: "choiceEnd", value: { index, finishReason: event.finishReason, completionTokens: event.completionTokens } },
            };
          }
        }
        outcome = firstFinish === FinishReason.FINISH_REASON_CANCELLED ? "cancelled" : "finished";
        timing.finished(firstFinish);
        yield { event: { $case: "finished", value: { finishReason: firstFinish, usage } } };
      } finally {
        // A caller that cancels stops reading before any terminal event.
        generations.inc({ outcome: outcome ?? "cancelled" });
        if (outcome !== undefined && outcome !== "cancelled") ended(outcome === "failed");
        release();
        await closeAll();
      }
    },

    async tokenize(request) {
      const engine = servingEngine();
      const tokens = await engineCall(() => engine.tokenize(request.model, request.text, request.messages));
      return { tokens, tokenCount: tokens.length };
    },

    async detokenize(request) {
      const engine = servingEngine();
      return { text: await engineCall(() => engine.detokenize(request.model, request.tokens)) };
    },

    async embed(request, context: CallContext) {
      const engine = servingEngine();
      if (request.inputs.length === 0 || request.inputs.length > maxEmbeddingInputs) {
        throw new ServerError(Status.INVALID_ARGUMENT, `inputs: ${request.inputs.length} given, 1 to ${maxEmbeddingInputs} accepted`);
      }
      const result = await engineCall(() => engine.embed(request.model, request.inputs, context.signal));
      return { embeddings: result.vectors.map((values) => ({ values })), promptTokens: result.promptTokens };
    },

    async loadModel(request) {
      return { model: await engineCall(() => runtime.load(request.modelId, request.modelPath)) };
    },

    async unloadModel(request) {
      await engineCall(() => runtime.unload(request.modelId));
      return {};
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
