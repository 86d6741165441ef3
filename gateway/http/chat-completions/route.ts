import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Status } from "nice-grpc";
import { ChatMessage, FinishReason, SamplingParams, type Usage } from "../../../gen/infermesh/common/v1/common.js";
import { collectChat, runChat, type ChatFlowDeps, type ChatFlowRequest, type CollectedChat } from "../../chat-flow.js";
import { ApiError, openAiErrorBody, toApiError } from "../../errors.js";
import type { GenerationEvent } from "../../mesh/generation.js";
import { parseBody } from "../validation.js";
import { chatCompletionBody, contentText, type ChatCompletionBody } from "./schema.js";

/** POST /v1/chat/completions (and /api/v1/…): OpenAI chat completions, streamed or whole. */
export function registerChatCompletions(app: FastifyInstance, deps: ChatFlowDeps): void {
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const body = parseBody(chatCompletionBody, request.body);
    const abort = new AbortController();
    reply.raw.on("close", () => {
      if (!reply.raw.writableFinished) abort.abort(new Error("client disconnected"));
    });
    const events = runChat(deps, toFlowRequest(String(request.id), body), abort.signal);
    const completion = { id: `chatcmpl-${randomUUID().replaceAll("-", "")}`, created: Math.floor(Date.now() / 1000) };
    try {
      if (body.stream) {
        // Errors before the first event become an HTTP error status; after it, an SSE error event.
        const first = await events.next();
        await streamCompletion(reply, events, first, completion, body, request.id);
      } else {
        await sendCompletion(reply, await collectChat(events, body.model), completion);
      }
    } finally {
      await events.return(undefined);
    }
  };
  app.post("/v1/chat/completions", handler);
  app.post("/api/v1/chat/completions", handler);
}

function toFlowRequest(requestId: string, body: ChatCompletionBody): ChatFlowRequest {
  return {
    requestId,
    model: body.model,
    messages: body.messages.map((message) => ChatMessage.create({ role: message.role, content: contentText(message.content), name: message.name })),
    sampling: SamplingParams.create({
      temperature: body.temperature ?? undefined,
      topP: body.top_p ?? undefined,
      topK: undefined,
      minP: undefined,
      seed: body.seed == null ? undefined : body.seed >>> 0,
      stop: body.stop == null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop,
      maxTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined,
      presencePenalty: body.presence_penalty ?? undefined,
      frequencyPenalty: body.frequency_penalty ?? undefined,
    }),
    user: body.user ?? "",
  };
}

type Events = AsyncGenerator<GenerationEvent>;
interface CompletionIds {
  readonly id: string;
  readonly created: number;
}

async function sendCompletion(reply: FastifyReply, answer: CollectedChat, completion: CompletionIds): Promise<void> {
  await reply.send({
    id: completion.id,
    object: "chat.completion",
    created: completion.created,
    model: answer.model,
    choices: [
      {
        index: 0,
        message: { role: "assistant", content: answer.content, refusal: null },
        logprobs: null,
        finish_reason: finishReasonText(answer.finishReason),
      },
    ],
    usage: usageBody(answer.usage),
  });
}

async function streamCompletion(
  reply: FastifyReply,
  events: Events,
  first: IteratorResult<GenerationEvent>,
  completion: CompletionIds,
  body: ChatCompletionBody,
  requestId: string,
): Promise<void> {
  const includeUsage = body.stream_options?.include_usage === true;
  let model = body.model;
  reply.hijack();
  const out = reply.raw;
  out.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-request-id": requestId,
  });
  const write = (data: unknown) => out.write(`data: ${JSON.stringify(data)}\n\n`);
  const chunk = (delta: object, finishReason: string | null) => ({
    id: completion.id,
    object: "chat.completion.chunk",
    created: completion.created,
    model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    ...(includeUsage ? { usage: null } : {}),
  });
  try {
    let sentRole = false;
    for (let result = first; !result.done && !out.destroyed; result = await events.next()) {
      const event = result.value;
      if (event.$case === "started") {
        model = event.value.model || model;
      } else if (event.$case === "delta") {
        if (!sentRole) {
          sentRole = true;
          write(chunk({ role: "assistant", content: "" }, null));
        }
        if (event.value.text !== "") write(chunk({ content: event.value.text }, null));
      } else if (event.$case === "finished") {
        if (!sentRole) write(chunk({ role: "assistant", content: "" }, null));
        write(chunk({}, finishReasonText(event.value.finishReason)));
        if (includeUsage) {
          write({ id: completion.id, object: "chat.completion.chunk", created: completion.created, model, choices: [], usage: usageBody(event.value.usage) });
        }
        out.write("data: [DONE]\n\n");
      } else if (event.$case === "error") {
        write(openAiErrorBody(new ApiError(event.value.statusCode as Status, event.value.message)));
      }
    }
  } catch (error) {
    if (!out.destroyed) write(openAiErrorBody(toApiError(error)));
  } finally {
    out.end();
  }
}

function finishReasonText(reason: FinishReason): string {
  return reason === FinishReason.FINISH_REASON_LENGTH ? "length" : "stop";
}

function usageBody(usage: Usage | undefined) {
  const promptTokens = usage?.promptTokens ?? 0;
  const completionTokens = usage?.completionTokens ?? 0;
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: usage?.cachedTokens ?? 0 },
    completion_tokens_details: { reasoning_tokens: usage?.reasoningTokens ?? 0 },
  };
}

