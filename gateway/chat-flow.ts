import { trace } from "@opentelemetry/api";
import { Status } from "nice-grpc";
import { Histogram, type Registry } from "prom-client";
import { FinishReason, PriorityClass, type ChatMessage, type SamplingParams, type Usage } from "../gen/infermesh/common/v1/common.js";
import { ApiError } from "./errors.js";
import { acquireSlot } from "./mesh/admission-slot.js";
import type { MeshClients } from "./mesh/clients.js";
import { generate, pickWorkers, type GenerationEvent, type GenerationRequest } from "./mesh/generation.js";
import type { ModelCatalog } from "./mesh/models.js";

/** A validated chat request, whichever API it came in through. */
export interface ChatFlowRequest {
  readonly requestId: string;
  readonly model: string;
  readonly messages: readonly ChatMessage[];
  readonly sampling: SamplingParams;
  /** End-user id: the session and fairness key. */
  readonly user: string;
}

/** What the chat flow needs; built once in main. */
export interface ChatFlowDeps {
  readonly clients: MeshClients;
  readonly catalog: ModelCatalog;
  readonly metrics: ChatFlowMetrics;
  /** Output bound sent to admission when the request sets none. */
  readonly defaultMaxTokens: number;
}

/** Latency histograms of the chat flow. */
export interface ChatFlowMetrics {
  readonly queueSeconds: Histogram;
  readonly timeToFirstTokenSeconds: Histogram;
}

export function createChatFlowMetrics(registry: Registry): ChatFlowMetrics {
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

/** A pick older than this when the slot is granted is asked for again: the fleet moved on. */
const freshPickMs = 50;

/** Four characters per token: a cheap estimate until the gateway tokenizes (later work). */
export const estimateTokens = (messages: readonly ChatMessage[]) =>
  Math.ceil(messages.reduce((sum, message) => sum + message.content.length + message.role.length + 4, 0) / 4);

/**
 * Drives one chat through the mesh: model check, admission, routing, generation. The
 * admission slot is released on every path, when the generator finishes, fails or is
 * closed early (client disconnect).
 */
export async function* runChat(deps: ChatFlowDeps, request: ChatFlowRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
  const arrivedAt = performance.now();
  const span = trace.getActiveSpan();
  span?.setAttributes({ "gen_ai.operation.name": "chat", "gen_ai.request.model": request.model, "infermesh.request_id": request.requestId });
  if (!(await deps.catalog.find(request.model, signal))) {
    if (deps.catalog.servedBefore(request.model)) {
      throw new ApiError(Status.UNAVAILABLE, `No worker is serving \`${request.model}\` right now; retry shortly.`, {
        code: "model_unavailable",
        retryAfterMs: 1_000,
      });
    }
    throw new ApiError(Status.NOT_FOUND, `The model \`${request.model}\` does not exist or is not served right now.`, {
      param: "model",
      code: "model_not_found",
    });
  }
  const estimatedInputTokens = estimateTokens(request.messages);
  const generation: GenerationRequest = {
    requestId: request.requestId,
    model: request.model,
    messages: request.messages,
    sampling: request.sampling,
    estimatedInputTokens,
    sessionId: request.user,
  };
  // Pick while admission decides: a request granted at once (the common case) then
  // pays for one round trip, not two. A pick that went stale in the queue is redone.
  const earlyPick = pickWorkers(deps.clients, generation, signal);
  earlyPick.catch(() => undefined);
  const slot = await acquireSlot(
    deps.clients,
    {
      requestId: request.requestId,
      tenantId: request.user || "anonymous",
      priorityClass: PriorityClass.PRIORITY_CLASS_STANDARD,
      model: request.model,
      estimatedInputTokens,
      maxOutputTokens: request.sampling.maxTokens ?? deps.defaultMaxTokens,
      queueTimeoutMs: undefined,
    },
    signal,
  );
  deps.metrics.queueSeconds.observe((performance.now() - arrivedAt) / 1000);
  try {
    const pick = slot.queuedMs > freshPickMs ? await pickWorkers(deps.clients, generation, signal) : await earlyPick;
    let firstText = true;
    for await (const event of generate(deps.clients, generation, pick, signal)) {
      if (event.$case === "delta" && firstText) {
        firstText = false;
        deps.metrics.timeToFirstTokenSeconds.observe((performance.now() - arrivedAt) / 1000);
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
    slot.release();
  }
}

/** A whole answer, gathered from a chat's events. */
export interface CollectedChat {
  /** The model that actually served it. */
  readonly model: string;
  readonly content: string;
  readonly finishReason: FinishReason;
  readonly usage: Usage | undefined;
}

/** Gathers a chat's events into the whole answer; a terminal error event is thrown as an ApiError. */
export async function collectChat(events: AsyncIterable<GenerationEvent>, requestedModel: string): Promise<CollectedChat> {
  let model = requestedModel;
  let content = "";
  let finishReason = FinishReason.FINISH_REASON_STOP;
  let usage: Usage | undefined;
  for await (const event of events) {
    switch (event.$case) {
      case "started":
        model = event.value.model || model;
        break;
      case "delta":
        content += event.value.text;
        break;
      case "finished":
        finishReason = event.value.finishReason;
        usage = event.value.usage;
        break;
      case "error":
        throw new ApiError(event.value.statusCode as Status, event.value.message);
    }
  }
  return { model, content, finishReason, usage };
}
