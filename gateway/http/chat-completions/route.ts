import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Status } from "nice-grpc";
import type { Delta } from "../../../gen/infermesh/worker/v1/worker_service.js";
import { ApiError } from "../../errors.js";
import { runGeneration } from "../../flow/generate.js";
import { resolveGeneration } from "../../flow/resolve.js";
import type { GenerationEvent } from "../../mesh/generation.js";
import { collectGeneration, streamErrorOf, type CollectedGeneration } from "../../translate/choices.js";
import {
  chatGenerationOf,
  finishReasonText,
  logprobsContent,
  systemFingerprint,
  toolCallsBody,
  usageBody,
} from "../../translate/openai.js";
import { toolCallDeltas } from "../../translate/tool-calls.js";
import { replyFromCache, responseCacheKey } from "../cache-policy.js";
import { clientAbort } from "../client-abort.js";
import { askedOf, type HttpDeps } from "../deps.js";
import { ChunkEnvelope, SseStream, type StreamIds } from "../sse.js";
import { parseBody } from "../validation.js";
import { chatCompletionBody, type ChatCompletionBody } from "./schema.js";

/** POST /v1/chat/completions (and /api/v1/…): OpenAI chat completions, streamed or whole. */
export function registerChatCompletions(app: FastifyInstance, deps: HttpDeps): void {
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const body = parseBody(chatCompletionBody, request.body);
    const resolved = await resolveGeneration(
      deps.access,
      request.identity,
      askedOf(request, body.model, body.user),
      "chat",
      chatGenerationOf(body),
    );
    const completion: StreamIds = {
      id: `chatcmpl-${randomUUID().replaceAll("-", "")}`,
      created: Math.floor(Date.now() / 1000),
      fingerprint: systemFingerprint(await deps.flow.catalog.find(resolved.model), resolved.model),
    };
    request.observation?.responseId(completion.id);
    const abort = clientAbort(reply);
    const events = runGeneration(deps.flow, resolved, abort.signal);
    try {
      if (body.stream) {
        // Errors before the first event become an HTTP error status; after it, an SSE error event.
        const first = await events.next();
        await streamCompletion(new SseStream(reply, { "x-request-id": request.id }), events, first, completion, body, resolved.model);
      } else {
        const cacheKey = responseCacheKey(deps, request, resolved, body);
        if (await replyFromCache(deps, cacheKey, reply, { id: completion.id, created: completion.created })) return reply;
        const answer = completionBody(await collectGeneration(events, resolved.model, body.n ?? 1), completion, body.logprobs === true);
        if (cacheKey !== undefined) deps.cache()?.set(cacheKey, JSON.stringify(answer));
        return await reply.send(answer);
      }
    } finally {
      await events.return(undefined);
    }
  };
  app.post("/v1/chat/completions", handler);
  app.post("/api/v1/chat/completions", handler);
}

function completionBody(answer: CollectedGeneration, completion: StreamIds, withLogprobs: boolean) {
  return {
    id: completion.id,
    object: "chat.completion",
    created: completion.created,
    model: answer.model,
    system_fingerprint: completion.fingerprint,
    choices: answer.choices.map((choice) => ({
      index: choice.index,
      message: {
        role: "assistant",
        // OpenAI sends null content with tool calls and no text.
        content: choice.toolCalls.length > 0 && choice.text === "" ? null : choice.text,
        refusal: null,
        ...(choice.toolCalls.length > 0 ? { tool_calls: toolCallsBody(choice.toolCalls) } : {}),
        ...(choice.reasoning !== "" ? { reasoning_content: choice.reasoning } : {}),
      },
      logprobs: withLogprobs ? { content: logprobsContent(choice.logprobs), refusal: null } : null,
      finish_reason: finishReasonText(choice.finishReason),
    })),
    usage: usageBody(answer.usage),
  };
}

/** What one choice has gathered since its last chunk. */
interface PendingDelta {
  content: string;
  reasoning: string;
  toolCalls: Delta["toolCalls"];
  logprobs: Delta["logprobs"];
}

/**
 * Streams chat.completion.chunk events. Every chunk shares the id, created, model and
 * fingerprint, serialised once. Deltas of a choice that arrive in one I/O turn, or
 * while the client reads slower than tokens arrive, are merged into one chunk; a token
 * that arrives alone waits at most one event-loop turn.
 */
async function streamCompletion(
  sse: SseStream,
  events: AsyncGenerator<GenerationEvent>,
  first: IteratorResult<GenerationEvent>,
  completion: StreamIds,
  body: ChatCompletionBody,
  resolvedModel: string,
): Promise<void> {
  const includeUsage = body.stream_options?.include_usage === true;
  const withLogprobs = body.logprobs === true;
  const choiceCount = body.n ?? 1;
  const envelope = new ChunkEnvelope(completion, "chat.completion.chunk", resolvedModel, includeUsage);
  const chunk = (index: number, delta: object, finishReason: string | null, logprobs: unknown = null) =>
    envelope.choice({ index, delta, logprobs, finish_reason: finishReason });

  const pending = new Map<number, PendingDelta>();
  const ended = new Set<number>();
  const flush = () => {
    for (const [index, delta] of pending) {
      const out: Record<string, unknown> = {};
      if (delta.reasoning !== "") out.reasoning_content = delta.reasoning;
      if (delta.content !== "") out.content = delta.content;
      if (delta.toolCalls.length > 0) out.tool_calls = toolCallDeltas(delta.toolCalls);
      const logprobs = withLogprobs ? { content: logprobsContent(delta.logprobs), refusal: null } : null;
      if (Object.keys(out).length > 0 || delta.logprobs.length > 0) sse.send(chunk(index, out, null, logprobs));
    }
    pending.clear();
  };
  const scheduleFlush = sse.coalescing(flush);
  const endChoice = (index: number, finishReason: string) => {
    if (ended.has(index)) return;
    ended.add(index);
    sse.send(chunk(index, {}, finishReason));
  };

  try {
    let rolesSent = false;
    const sendRoles = () => {
      if (rolesSent) return;
      rolesSent = true;
      for (let index = 0; index < choiceCount; index += 1) sse.send(chunk(index, { role: "assistant", content: "" }, null));
    };
    for (let result = first; !result.done && !sse.closed; result = await events.next()) {
      const event = result.value;
      switch (event.$case) {
        case "started":
          envelope.setModel(event.value.model || resolvedModel);
          sendRoles();
          break;
        case "delta": {
          sendRoles();
          const delta = event.value;
          const merged = pending.get(delta.index);
          if (merged) {
            merged.content += delta.text;
            merged.reasoning += delta.reasoningText;
            merged.toolCalls.push(...delta.toolCalls);
            merged.logprobs.push(...delta.logprobs);
          } else {
            pending.set(delta.index, {
              content: delta.text,
              reasoning: delta.reasoningText,
              toolCalls: [...delta.toolCalls],
              logprobs: [...delta.logprobs],
            });
          }
          scheduleFlush();
          break;
        }
        case "choiceEnd":
          flush();
          endChoice(event.value.index, finishReasonText(event.value.finishReason));
          break;
        case "finished": {
          sendRoles();
          flush();
          for (let index = 0; index < choiceCount; index += 1) endChoice(index, finishReasonText(event.value.finishReason));
          if (includeUsage) sse.send(envelope.usage(usageBody(event.value.usage)));
          sse.done();
          return;
        }
        case "error":
          flush();
          sse.sendError(streamErrorOf(event));
          return;
      }
    }
    if (!sse.closed) {
      flush();
      sse.sendError(new ApiError(Status.INTERNAL, "the worker ended the stream before it finished"));
    }
  } catch (error) {
    flush();
    sse.sendError(error);
  } finally {
    sse.end();
  }
}
