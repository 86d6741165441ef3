import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { pushable } from "it-pushable";
import { Status } from "nice-grpc";
import type { TokenLogprob, Usage } from "../../../gen/infermesh/common/v1/common.js";
import { ApiError } from "../../errors.js";
import { runGeneration } from "../../flow/generate.js";
import type { ResolvedGeneration } from "../../flow/request.js";
import { resolveGeneration } from "../../flow/resolve.js";
import type { GenerationEvent } from "../../mesh/generation.js";
import { type Choice, type CollectedGeneration, collectGeneration, streamErrorOf, sumUsage } from "../../translate/choices.js";
import { completionGenerationOf, finishReasonText, systemFingerprint, usageBody } from "../../translate/openai.js";
import { invalid } from "../../validation/generation.js";
import { replyFromCache, responseCacheKey } from "../cache-policy.js";
import { clientAbort } from "../client-abort.js";
import { askedOf, type HttpDeps } from "../deps.js";
import { ChunkEnvelope, SseStream, type StreamIds } from "../sse.js";
import { parseBody } from "../validation.js";
import { completionBody, type CompletionBody } from "./schema.js";

/** POST /v1/completions (and /api/v1/…): OpenAI's text completions, streamed or whole. */
export function registerCompletions(app: FastifyInstance, deps: HttpDeps): void {
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const body = parseBody(completionBody, request.body);
    const prompts = typeof body.prompt === "string" ? [body.prompt] : body.prompt;
    // The prompts share every other value: one resolution, validated once, serves them all.
    const empty = prompts.indexOf("");
    if (prompts.length > 1 && empty >= 0) throw invalid(`prompt[${empty}]`, "must not be empty");
    const resolved = await resolveGeneration(
      deps.access,
      request.identity,
      askedOf(request, body.model, body.user),
      "text_completion",
      completionGenerationOf(body, prompts[0]!),
    );
    const choicesPerPrompt = body.n ?? 1;
    const completion: StreamIds = {
      id: `cmpl-${randomUUID().replaceAll("-", "")}`,
      created: Math.floor(Date.now() / 1000),
      fingerprint: systemFingerprint(await deps.flow.catalog.find(resolved.model), resolved.model),
    };
    request.observation?.responseId(completion.id);
    const abort = clientAbort(reply);
    const run = (prompt: string, index: number) =>
      runGeneration(
        deps.flow,
        prompts.length === 1 ? resolved : { ...resolved, requestId: `${request.id}/${index}`, values: { ...resolved.values, prompt } },
        abort.signal,
      );
    if (body.stream) {
      const events = mergePrompts(prompts.map(run));
      try {
        const first = await events.next();
        await streamCompletion(new SseStream(reply, { "x-request-id": request.id }), events, first, completion, body, resolved, prompts);
      } finally {
        await events.return(undefined);
      }
      return;
    }
    const cacheKey = responseCacheKey(deps, request, resolved, body);
    if (await replyFromCache(deps, cacheKey, reply, { id: completion.id, created: completion.created })) return reply;
    let answers: CollectedGeneration[];
    try {
      answers = await Promise.all(prompts.map((prompt, index) => collectGeneration(run(prompt, index), resolved.model, choicesPerPrompt)));
    } finally {
      // One prompt failed: the others stop too, instead of decoding for nobody.
      abort.abort();
    }
    const answer = {
      id: completion.id,
      object: "text_completion",
      created: completion.created,
      model: answers[0]!.model,
      system_fingerprint: completion.fingerprint,
      choices: answers.flatMap((generation, promptIndex) =>
        generation.choices.map((choice) =>
          choiceBody(choice, promptIndex * choicesPerPrompt + choice.index, body.echo ? prompts[promptIndex]! : "", body.logprobs != null),
        ),
      ),
      usage: usageBody(sumUsage(answers.map((generation) => generation.usage))),
    };
    if (cacheKey !== undefined) deps.cache()?.set(cacheKey, JSON.stringify(answer));
    return reply.send(answer);
  };
  app.post("/v1/completions", handler);
  app.post("/api/v1/completions", handler);
}

function choiceBody(choice: Choice, index: number, echo: string, withLogprobs: boolean) {
  return {
    index,
    text: echo + choice.text,
    logprobs: withLogprobs ? legacyLogprobs(choice.logprobs, echo.length) : null,
    finish_reason: finishReasonText(choice.finishReason),
  };
}

/** The completions endpoint's own logprobs shape: parallel arrays. */
function legacyLogprobs(logprobs: readonly TokenLogprob[], startOffset: number) {
  let offset = startOffset;
  const textOffset = logprobs.map((entry) => {
    const at = offset;
    offset += entry.token.length;
    return at;
  });
  return {
    tokens: logprobs.map((entry) => entry.token),
    token_logprobs: logprobs.map((entry) => entry.logprob),
    top_logprobs: logprobs.map((entry) => Object.fromEntries(entry.topLogprobs.map((top) => [top.token, top.logprob]))),
    text_offset: textOffset,
  };
}

/** An event of one of several prompts' generations. */
interface PromptEvent {
  readonly prompt: number;
  readonly event: GenerationEvent;
}

/**
 * Interleaves the generations of several prompts. The first failure of any ends the
 * whole stream with it; closing the merged stream closes every generation.
 */
async function* mergePrompts(generations: AsyncGenerator<GenerationEvent>[]): AsyncGenerator<PromptEvent> {
  if (generations.length === 1) {
    for await (const event of generations[0]!) yield { prompt: 0, event };
    return;
  }
  const merged = pushable<PromptEvent>({ objectMode: true });
  let running = generations.length;
  for (const [prompt, generation] of generations.entries()) {
    void (async () => {
      for await (const event of generation) merged.push({ prompt, event });
    })().then(
      () => {
        running -= 1;
        if (running === 0) merged.end();
      },
      (error: unknown) => merged.end(error instanceof Error ? error : new Error(String(error))),
    );
  }
  try {
    yield* merged;
  } finally {
    await Promise.all(generations.map((generation) => generation.return(undefined)));
  }
}

async function streamCompletion(
  sse: SseStream,
  events: AsyncGenerator<PromptEvent>,
  first: IteratorResult<PromptEvent>,
  completion: StreamIds,
  body: CompletionBody,
  resolved: ResolvedGeneration,
  prompts: readonly string[],
): Promise<void> {
  const choicesPerPrompt = body.n ?? 1;
  const envelope = new ChunkEnvelope(completion, "text_completion", resolved.model, body.stream_options?.include_usage === true);
  const send = (index: number, text: string, finishReason: string | null, logprobs: unknown = null) =>
    sse.send(envelope.choice({ index, text, logprobs, finish_reason: finishReason }));
  const pending = new Map<number, { text: string; logprobs: TokenLogprob[] }>();
  const offsets = new Map<number, number>();
  const flush = () => {
    for (const [index, delta] of pending) {
      const offset = offsets.get(index) ?? 0;
      offsets.set(index, offset + delta.text.length);
      if (delta.text !== "" || delta.logprobs.length > 0)
        send(index, delta.text, null, body.logprobs != null ? legacyLogprobs(delta.logprobs, offset) : null);
    }
    pending.clear();
  };
  const scheduleFlush = sse.coalescing(flush);
  const usages: Usage[] = [];
  let finishedPrompts = 0;
  const ended = new Set<number>();
  try {
    if (body.echo) {
      prompts.forEach((prompt, promptIndex) => {
        for (let choice = 0; choice < choicesPerPrompt; choice += 1) {
          pending.set(promptIndex * choicesPerPrompt + choice, { text: prompt, logprobs: [] });
        }
      });
    }
    for (let result = first; !result.done && !sse.closed; result = await events.next()) {
      const { prompt, event } = result.value;
      const base = prompt * choicesPerPrompt;
      switch (event.$case) {
        case "started":
          envelope.setModel(event.value.model || resolved.model);
          break;
        case "delta": {
          const index = base + event.value.index;
          const merged = pending.get(index);
          if (merged) {
            merged.text += event.value.text;
            merged.logprobs.push(...event.value.logprobs);
          } else pending.set(index, { text: event.value.text, logprobs: [...event.value.logprobs] });
          scheduleFlush();
          break;
        }
        case "choiceEnd":
          flush();
          ended.add(base + event.value.index);
          send(base + event.value.index, "", finishReasonText(event.value.finishReason));
          break;
        case "finished":
          flush();
          for (let choice = 0; choice < choicesPerPrompt; choice += 1) {
            if (!ended.has(base + choice)) {
              ended.add(base + choice);
              send(base + choice, "", finishReasonText(event.value.finishReason));
            }
          }
          finishedPrompts += 1;
          if (event.value.usage) usages.push(event.value.usage);
          break;
        case "error":
          flush();
          sse.sendError(streamErrorOf(event));
          return;
      }
    }
    if (sse.closed) return;
    flush();
    if (finishedPrompts < prompts.length) {
      // A prompt's generation ended without its finished event: the answer is cut short.
      sse.sendError(new ApiError(Status.INTERNAL, "the worker ended the stream before it finished"));
      return;
    }
    if (body.stream_options?.include_usage === true) sse.send(envelope.usage(usageBody(sumUsage(usages))));
    sse.done();
  } catch (error) {
    flush();
    sse.sendError(error);
  } finally {
    sse.end();
  }
}
