import { trace } from "@opentelemetry/api";
import { Status } from "nice-grpc";
import { Histogram, type Registry } from "prom-client";
import type { ChatMessage, PriorityClass } from "../gen/infermesh/common/v1/common.js";
import type { GenerateRequest } from "../gen/infermesh/worker/v1/worker_service.js";
import { blockHashes, canonicalPrompt, prefixBlockChars } from "../services/common/prefix-hash.js";
import { ApiError } from "./errors.js";
import { acquireSlot, type AdmissionSlot } from "./mesh/admission-slot.js";
import type { ResolvedRequest } from "./access/access-control.js";
import type { TenantLimits } from "./access/api-keys.js";
import type { MeshClients } from "./mesh/clients.js";
import { generate, pickWorkers, withWorker, type GenerationEvent, type PlacedRequest } from "./mesh/generation.js";
import type { ModelCatalog } from "./mesh/models.js";
import { OutputReport } from "./mesh/output-report.js";

/** Who a request is charged to, from its API key (or the anonymous default). */
export interface Caller {
  /** Fairness and rate-limit key in admission. */
  readonly tenantId: string;
  readonly priorityClass: PriorityClass;
  /** The key's limits, enforced by admission per tenant. */
  readonly limits: TenantLimits | undefined;
}

/** A validated generation, whichever API it came in through. */
export interface GenerationFlowRequest {
  /** What the worker runs; `generate.model` is the resolved model id. */
  readonly generate: GenerateRequest;
  readonly caller: Caller;
  /** End-user id: the session-affinity key. */
  readonly sessionId: string;
  /** Models the router may run instead of `generate.model` (balanced profile). */
  readonly alternativeModels: readonly string[];
  /** OpenTelemetry's gen_ai.operation.name. */
  readonly operation: "chat" | "text_completion";
}

/** A generation as the caller's key, alias and profile resolved it. */
export function flowRequestFor(
  resolved: ResolvedRequest,
  user: string | null | undefined,
  operation: GenerationFlowRequest["operation"],
  generate: GenerateRequest,
): GenerationFlowRequest {
  return { generate, caller: resolved.caller, sessionId: user ?? "", alternativeModels: resolved.alternativeModels, operation };
}

/** What the flows need; built once in main. */
export interface FlowDeps {
  readonly clients: MeshClients;
  readonly catalog: ModelCatalog;
  readonly metrics: FlowMetrics;
  /** Every request's deadline, from arrival to its last token. */
  readonly requestTimeoutMs: number;
}

/**
 * `signal`, or the request's deadline, whichever comes first. `failure` turns the
 * cancellation the deadline causes into DEADLINE_EXCEEDED; `clear` stops the timer.
 */
function withDeadline(signal: AbortSignal, timeoutMs: number) {
  const controller = new AbortController();
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    controller.abort(new Error("deadline exceeded"));
  }, timeoutMs);
  const onAbort = () => controller.abort(signal.reason);
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  return {
    signal: controller.signal,
    failure(error: unknown): unknown {
      return expired
        ? new ApiError(Status.DEADLINE_EXCEEDED, `The request took longer than its deadline of ${timeoutMs} ms.`, { code: "timeout" })
        : error;
    },
    clear() {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    },
  };
}

/** Latency histograms of the flows. */
export interface FlowMetrics {
  readonly queueSeconds: Histogram;
  readonly timeToFirstTokenSeconds: Histogram;
}

export function createFlowMetrics(registry: Registry): FlowMetrics {
  return {
    queueSeconds: new Histogram({
      name: "infermesh_gateway_queue_seconds",
      help: "Time from arrival to the admission grant",
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30],
      registers: [registry],
    }),
    timeToFirstTokenSeconds: new Histogram({
      name: "infermesh_gateway_time_to_first_token_seconds",
      help: "Time from arrival to the first generated text",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
  };
}

/** Prompt blocks sent to the router: it matches at most 256 (as the Inference Extension does). */
const routedPrefixBlocks = 256;

/** A pick older than this when the slot is granted is asked for again: the fleet moved on. */
const freshPickMs = 50;

/** Four characters per token: a cheap estimate until the gateway tokenizes (later work). */
export const estimateTokens = (messages: readonly ChatMessage[], prompt = "") =>
  Math.ceil(
    messages.reduce(
      (sum, message) =>
        sum +
        message.content.length +
        message.role.length +
        4 +
        message.reasoningContent.length +
        message.toolCalls.reduce((calls, call) => calls + call.name.length + call.arguments.length, 0),
      prompt.length,
    ) / 4,
  );

/** Fails with NOT_FOUND for a model no worker ever served, UNAVAILABLE for one that is away. */
export async function requireModel(deps: FlowDeps, model: string, signal: AbortSignal): Promise<void> {
  if (await deps.catalog.find(model, signal)) return;
  if (deps.catalog.servedBefore(model)) {
    throw new ApiError(Status.UNAVAILABLE, `No worker is serving \`${model}\` right now; retry shortly.`, {
      code: "model_unavailable",
      retryAfterMs: 1_000,
    });
  }
  throw new ApiError(Status.NOT_FOUND, `The model \`${model}\` does not exist or is not served right now.`, {
    param: "model",
    code: "model_not_found",
  });
}

/**
 * Admission and the router's pick for one request, asked at once: a request granted
 * at once (the common case) then pays for one round trip, not two. A pick that went
 * stale in the queue is asked for again. The slot is released on every failure here.
 */
async function admitAndPick(deps: FlowDeps, placed: PlacedRequest, caller: Caller, signal: AbortSignal) {
  const arrivedAt = performance.now();
  const earlyPick = pickWorkers(deps.clients, placed, signal);
  earlyPick.catch(() => undefined);
  const slot: AdmissionSlot = await acquireSlot(
    deps.clients,
    {
      requestId: placed.requestId,
      tenantId: caller.tenantId,
      priorityClass: caller.priorityClass,
      model: placed.model,
      estimatedInputTokens: placed.estimatedInputTokens,
      maxOutputTokens: placed.maxOutputTokens,
      queueTimeoutMs: undefined,
      outputTokens: 0,
      tenantLimits: caller.limits && {
        maxConcurrency: caller.limits.maxConcurrency,
        requestsPerMinute: caller.limits.requestsPerMinute,
        tokensPerMinute: caller.limits.tokensPerMinute,
      },
    },
    signal,
  );
  deps.metrics.queueSeconds.observe((performance.now() - arrivedAt) / 1000);
  try {
    const pick = slot.queuedMs > freshPickMs ? await pickWorkers(deps.clients, placed, signal) : await earlyPick;
    return { slot, pick };
  } catch (error) {
    slot.release();
    throw error;
  }
}

/**
 * Drives one generation through the mesh: model check, admission, routing, the
 * worker. The admission slot is released on every path: when the generator finishes,
 * fails or is closed early (client disconnect).
 */
export async function* runGeneration(
  deps: FlowDeps,
  request: GenerationFlowRequest,
  clientSignal: AbortSignal,
): AsyncGenerator<GenerationEvent> {
  const arrivedAt = performance.now();
  const deadline = withDeadline(clientSignal, deps.requestTimeoutMs);
  const signal = deadline.signal;
  const { generate: work } = request;
  const span = trace.getActiveSpan();
  span?.setAttributes({
    "gen_ai.operation.name": request.operation,
    "gen_ai.request.model": work.model,
    "infermesh.request_id": work.requestId,
  });
  try {
    await requireModel(deps, work.model, signal);
    // Profiles give every request an output bound; admission and the router count all its choices.
    const maxOutputTokens = (work.sampling?.n ?? 1) * (work.sampling?.maxTokens ?? 0);
    const placed: PlacedRequest = {
      requestId: work.requestId,
      model: work.model,
      estimatedInputTokens: estimateTokens(work.messages, work.prompt),
      sessionId: request.sessionId,
      alternativeModels: request.alternativeModels,
      prefixBlockHashes: blockHashes(canonicalPrompt(work), prefixBlockChars, routedPrefixBlocks),
      maxOutputTokens,
    };
    const { slot, pick } = await admitAndPick(deps, placed, request.caller, signal);
    // Output tokens go to admission as they stream: the tenant's tokens per minute pay for them.
    const output = new OutputReport(slot);
    try {
      let firstText = true;
      // The worker tracks the KV a session leaves behind, for memory-guard's evictions.
      for await (const event of generate(
        deps.clients,
        { ...work, sessionId: request.sessionId, priorityClass: request.caller.priorityClass },
        pick,
        signal,
      )) {
        if (event.$case === "delta") {
          output.add(event.value.tokenCount);
          if (firstText) {
            firstText = false;
            deps.metrics.timeToFirstTokenSeconds.observe((performance.now() - arrivedAt) / 1000);
          }
        }
        if (event.$case === "finished") {
          // Before the caller sees the end: its next request must find this one's output charged.
          output.finish(event.value.usage?.completionTokens);
        }
        if (event.$case === "finished" && event.value.usage) {
          span?.setAttributes({
            "gen_ai.usage.input_tokens": event.value.usage.promptTokens,
            "gen_ai.usage.output_tokens": event.value.usage.completionTokens,
          });
        }
        yield event;
      }
    } finally {
      output.finish();
      slot.release();
    }
  } catch (error) {
    throw deadline.failure(error);
  } finally {
    deadline.clear();
  }
}

/** A validated embeddings request. */
export interface EmbeddingFlowRequest {
  readonly requestId: string;
  readonly model: string;
  readonly inputs: readonly string[];
  readonly caller: Caller;
  readonly sessionId: string;
}

/** One embedding per input and the tokens they took, from the worker that computed them. */
export interface EmbeddingResult {
  readonly vectors: readonly (readonly number[])[];
  readonly promptTokens: number;
}

/** Runs an embeddings request through admission and routing to a worker's Embed. */
export async function runEmbedding(deps: FlowDeps, request: EmbeddingFlowRequest, clientSignal: AbortSignal): Promise<EmbeddingResult> {
  trace.getActiveSpan()?.setAttributes({
    "gen_ai.operation.name": "embeddings",
    "gen_ai.request.model": request.model,
    "infermesh.request_id": request.requestId,
  });
  const deadline = withDeadline(clientSignal, deps.requestTimeoutMs);
  try {
    return await embed(deps, request, deadline.signal);
  } catch (error) {
    throw deadline.failure(error);
  } finally {
    deadline.clear();
  }
}

async function embed(deps: FlowDeps, request: EmbeddingFlowRequest, signal: AbortSignal): Promise<EmbeddingResult> {
  await requireModel(deps, request.model, signal);
  const placed: PlacedRequest = {
    requestId: request.requestId,
    model: request.model,
    estimatedInputTokens: Math.ceil(request.inputs.reduce((sum, input) => sum + input.length, 0) / 4),
    sessionId: request.sessionId,
    alternativeModels: [],
    prefixBlockHashes: [],
    maxOutputTokens: 0,
  };
  const { slot, pick } = await admitAndPick(deps, placed, request.caller, signal);
  try {
    const response = await withWorker(deps.clients, pick, signal, (worker) =>
      worker.embed({ model: request.model, inputs: [...request.inputs] }, { signal }),
    );
    return { vectors: response.embeddings.map((embedding) => embedding.values), promptTokens: response.promptTokens };
  } finally {
    slot.release();
  }
}
