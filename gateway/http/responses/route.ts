import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { Status } from "nice-grpc";
import type { KeyIdentity } from "../../access/api-keys.js";
import { ApiError } from "../../errors.js";
import { runGeneration } from "../../flow/generate.js";
import { resolveGeneration } from "../../flow/resolve.js";
import type { GenerationEvent } from "../../mesh/generation.js";
import { responseNotFound } from "../../responses-store/responses-store.js";
import {
  inputItemsOf,
  newItemId,
  ResponseBuilder,
  type ResponseEventSink,
  type ResponseItem,
  responseEcho,
  responsesGenerationOf,
  responsesParam,
  wantsLogprobs,
} from "../../translate/responses.js";
import { clientAbort } from "../client-abort.js";
import { askedOf, type HttpDeps } from "../deps.js";
import { SseStream } from "../sse.js";
import { parseBody } from "../validation.js";
import { inputItemsQuery, responsesBody } from "./schema.js";

/**
 * Whose stored responses a caller reads: its key's tenant. Callers without a key (auth
 * off) cannot be told apart, so they share one namespace.
 */
const storeTenantOf = (identity: KeyIdentity | undefined) => (identity ? `tenant:${identity.tenant}` : "anonymous");

/**
 * OpenAI's Responses API: POST /v1/responses (and /api/v1/…), streamed or whole, through
 * the same admission, routing and workers as chat; GET and DELETE /v1/responses/{id} and
 * GET …/{id}/input_items on the stored ones.
 */
export function registerResponses(app: FastifyInstance, deps: HttpDeps): void {
  const create = async (request: FastifyRequest, reply: FastifyReply) => {
    const body = parseBody(responsesBody, request.body);
    const tenantId = storeTenantOf(request.identity);
    const conversation = body.previous_response_id ? await deps.responses.conversation(tenantId, body.previous_response_id) : [];
    // Referenced items are looked up first (the shared store answers asynchronously).
    const referenced = new Map<string, object | undefined>();
    if (typeof body.input !== "string") {
      for (const entry of body.input) {
        if (entry.type === "item_reference" && !referenced.has(entry.id))
          referenced.set(entry.id, await deps.responses.item(tenantId, entry.id));
      }
    }
    const input = inputItemsOf(body.input, (reference, index) => {
      const item = referenced.get(reference.id);
      if (!item) {
        throw new ApiError(Status.NOT_FOUND, `Item with id '${reference.id}' not found.`, {
          param: `input[${index}].id`,
          code: "item_not_found",
        });
      }
      return item as ResponseItem;
    });
    const resolved = await resolveGeneration(
      deps.access,
      request.identity,
      askedOf(request, body.model, body.user),
      "chat",
      responsesGenerationOf(body, conversation, input),
      { rename: responsesParam },
    );
    const id = newItemId("resp");
    request.observation?.responseId(id);
    const builderFor = (sink?: ResponseEventSink) =>
      new ResponseBuilder(
        { id, created_at: Math.floor(Date.now() / 1000), model: resolved.model, ...responseEcho(body) },
        { logprobs: wantsLogprobs(body), parallelToolCalls: body.parallel_tool_calls ?? true },
        sink,
      );
    const store = async (builder: ResponseBuilder) => {
      if (body.store !== false && builder.ended) await deps.responses.put({ tenantId, response: builder.response(), inputItems: input });
    };
    // OpenAI's cache-routing hint keys session affinity when given.
    const session = body.prompt_cache_key ? { ...resolved, sessionId: body.prompt_cache_key } : resolved;
    const abort = clientAbort(reply);
    const events = runGeneration(deps.flow, session, abort.signal);
    try {
      if (!body.stream) {
        const builder = builderFor();
        for await (const event of events) {
          builder.add(event);
          if (event.$case === "error") throw new ApiError(event.value.statusCode as Status, event.value.message);
        }
        if (!builder.ended) throw new ApiError(Status.INTERNAL, "the worker ended the stream before it finished");
        await store(builder);
        return await reply.send(builder.response());
      }
      // Errors before the first event become an HTTP error status; after it, response.failed.
      const first = await events.next();
      const sse = new SseStream(reply, { "x-request-id": request.id });
      const builder = builderFor((type, event) => sse.sendEvent(type, JSON.stringify(event)));
      await streamResponse(sse, builder, events, first);
      await store(builder);
    } finally {
      await events.return(undefined);
    }
  };

  const retrieve = async (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply) => {
    const stored = await deps.responses.get(storeTenantOf(request.identity), request.params.id);
    if (!stored) throw responseNotFound(request.params.id);
    return reply.send(stored.response);
  };

  const remove = async (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply) => {
    if (!(await deps.responses.delete(storeTenantOf(request.identity), request.params.id))) throw responseNotFound(request.params.id);
    return reply.send({ id: request.params.id, object: "response", deleted: true });
  };

  const inputItems = async (request: FastifyRequest<{ Params: { id: string } }>, reply: FastifyReply) => {
    const query = parseBody(inputItemsQuery, request.query);
    const stored = await deps.responses.get(storeTenantOf(request.identity), request.params.id);
    if (!stored) throw responseNotFound(request.params.id);
    const items = (query.order === "desc" ? [...stored.inputItems].reverse() : stored.inputItems) as ResponseItem[];
    let start = 0;
    if (query.after !== undefined) {
      start = items.findIndex((item) => item.id === query.after) + 1;
      if (start === 0) throw new ApiError(Status.INVALID_ARGUMENT, `No input item with id '${query.after}'.`, { param: "after" });
    }
    const page = items.slice(start, start + query.limit);
    return reply.send({
      object: "list",
      data: page,
      first_id: page[0]?.id ?? null,
      last_id: page.at(-1)?.id ?? null,
      has_more: start + page.length < items.length,
    });
  };

  for (const prefix of ["/v1", "/api/v1"]) {
    app.post(`${prefix}/responses`, create);
    app.get(`${prefix}/responses/:id`, retrieve);
    app.delete(`${prefix}/responses/:id`, remove);
    app.get(`${prefix}/responses/:id/input_items`, inputItems);
  }
}

/** Streams a response's events until its end, a failure, or the client leaving. */
async function streamResponse(
  sse: SseStream,
  builder: ResponseBuilder,
  events: AsyncGenerator<GenerationEvent>,
  first: IteratorResult<GenerationEvent>,
): Promise<void> {
  try {
    builder.start();
    for (let result = first; !result.done && !sse.closed && !builder.ended; result = await events.next()) builder.add(result.value);
    if (!sse.closed && !builder.ended) builder.fail(new ApiError(Status.INTERNAL, "the worker ended the stream before it finished"));
  } catch (error) {
    builder.fail(error);
  } finally {
    sse.end();
  }
}
